"""The web dashboard: HTML shells served by hposvc, filled by small scripts over the API."""
