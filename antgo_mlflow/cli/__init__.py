"""The `antgo` command line: click groups that parse, call one function and print."""
