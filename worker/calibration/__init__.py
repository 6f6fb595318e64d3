"""Direction heads: calibrators, the calibrator store, fitting, tuning and the 3-way decode."""
