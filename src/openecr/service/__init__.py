"""Use cases. Imports domain, errors and ports only: never a backend or a framework."""
