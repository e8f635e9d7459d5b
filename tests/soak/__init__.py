"""Long soaks (run by hand or by .ci/run's soak step) and the harnesses the short tests share."""
