"""RBD mirror probes: what Ceph itself says about replication, on a schedule."""
