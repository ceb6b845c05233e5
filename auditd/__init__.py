"""auditd: an audit daemon for Kubernetes DR pairs that replicate volumes with Ceph RBD mirroring."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("auditd")
except PackageNotFoundError:  # run from a source tree that was not installed
    __version__ = "0+unknown"
