"""auditd: an audit daemon for Kubernetes DR pairs that replicate volumes with Ceph RBD mirroring."""


def __getattr__(name: str) -> str:
    # The version is read from the installed package's metadata when first asked for, not at
    # every start: importlib.metadata is 28 ms of a one-shot command such as `auditd report`.
    if name != "__version__":
        raise AttributeError(f"module 'auditd' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("auditd")
    except PackageNotFoundError:  # run from a source tree that was not installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
