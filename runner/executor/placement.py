"""A build's first process moves itself into its cgroup, where the hierarchy lets it do so cheaply.

Moving another process into a cgroup (writing its pid to `cgroup.procs`) takes the kernel's
global cgroup threadgroup lock for writing, which waits out an RCU grace period: 11 to 17 ms on
the development machine whenever cgroups were quiet for a moment, which is before every build.
A thread that moves itself through the legacy hierarchy's `tasks` file (writing `0`) skips that
lock (kernel/cgroup/cgroup.c, `cgroup_procs_write_start`): 0.2 ms for the three hierarchies
here. The first process of a build is single-threaded, so its thread is the whole process.

So with cgroup v1 the first process is a fixed Perl program (Perl is part of every Debian
system, `perl-base` being Essential, and starts in 2 ms where Python takes 10). It writes `0`
into the cgroup's `tasks` files, says so on a pipe the daemon reads, and execs the held start
(`flock` at the gate, then the build's command) with the argument list and environment it was
given: never a shell, never the build's data in the program. Without Perl, or with cgroup v2
(whose `cgroup.procs` always takes the lock), the daemon moves the process as before
(`BuildCgroup.place`).
"""

import functools
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

# argv: the readiness pipe's descriptor, the environment's, the `tasks` files, "--", then the
# command. Perl starts with an empty environment (so no PERL5LIB or PERL5OPT of a build's
# variables acts on it, as the daemon's user); the command gets the build's, read from a
# memfd (never argv).
SELF_PLACEMENT = r"""
my ($ready, $environment) = splice(@ARGV, 0, 2);
my @files;
push @files, shift @ARGV while @ARGV && $ARGV[0] ne "--";
shift @ARGV;
for my $file (@files) {
    open(my $handle, ">", $file) or die "cannot open $file: $!\n";
    syswrite($handle, "0") or die "cannot write $file: $!\n";
    close($handle) or die "cannot write $file: $!\n";
}
open(my $variables, "<&=", $environment) or die "cannot read the environment: $!\n";
my $content = do { local $/; <$variables> };
close($variables);
%ENV = map { split(/=/, $_, 2) } grep { length } split(/\0/, $content);
open(my $pipe, ">&=", $ready) or die "cannot report: $!\n";
syswrite($pipe, "placed") or die "cannot report: $!\n";
close($pipe);
exec { $ARGV[0] } @ARGV or die "cannot run $ARGV[0]: $!\n";
"""
PLACED = b"placed"


def can_place_itself() -> bool:
    return _perl() is not None


def self_placing(
    command: list[str], tasks_files: list[Path], ready_fd: int, environment_fd: int
) -> list[str]:
    """`command` started by the Perl program that moves itself into the cgroup through
    `tasks_files` first (`can_place_itself` says whether there is Perl)."""
    perl = _perl()
    assert perl is not None
    files = map(str, tasks_files)
    return [perl, "-e", SELF_PLACEMENT, str(ready_fd), str(environment_fd), *files, "--", *command]


def environment_file(env: Mapping[str, str]) -> int:
    """A memfd holding `env` as NUL-separated `NAME=value`, read from its start."""
    descriptor = os.memfd_create("hobotnica-environment", os.MFD_CLOEXEC)
    data = b"\0".join(f"{name}={value}".encode() for name, value in env.items())
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]
    os.lseek(descriptor, 0, os.SEEK_SET)
    return descriptor


@functools.cache
def _perl() -> str | None:
    return shutil.which("perl")
