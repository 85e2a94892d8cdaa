"""Reports: the zero-shot run report, the few-shot report and sweep, the transfer report, and results beside the paper."""
