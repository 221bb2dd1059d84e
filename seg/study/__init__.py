"""The head study: diagnostics during training, paired statistics over seeds, the comparison report."""
