"""The mirror: shadow calls, normalisation and recording, away from the user's path."""
