"""Batch runs and sweeps: prompt files, output records, locks and run folders."""
