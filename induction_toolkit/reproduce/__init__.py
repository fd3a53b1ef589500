"""One module per paper result, each a function returning a result object (JSON dict + table)."""
