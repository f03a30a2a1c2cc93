"""Webhook intake: signature check, routers per event family, and the HTTP handler."""
