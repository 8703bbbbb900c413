"""Build-time and developer tools behind the CLI (the RxNorm table build, the local demo FHIR server with its
installer, the README's settings table). The service never imports them (tests/test_architecture.py); they may
use what a serving process does not need."""
