"""HTTP surface other than webhooks: health, the build page and the build API."""
