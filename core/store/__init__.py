"""The session store: one HDF5 file per session, transactions, locks and stage states.

The only package that touches HDF5; everything else reads and writes through ``Session``."""
