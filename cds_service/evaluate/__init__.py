"""STEP 5: run a service's rules over PatientFacts (pure: no I/O)."""
