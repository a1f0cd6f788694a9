"""Pure domain code: values, validation and manifest parsing. No I/O, no frameworks."""
