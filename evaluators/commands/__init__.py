"""`moeprune eval` and `moeprune report`."""
