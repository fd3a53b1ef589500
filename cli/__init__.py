"""The ``induct`` command line. Kept import-light: heavy modules load inside each command."""
