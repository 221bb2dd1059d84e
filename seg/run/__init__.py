"""Running a training job: build from the config, fit, write the run directory; entry-point helpers."""
