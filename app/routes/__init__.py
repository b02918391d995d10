"""One router per area: detect, generators, health, metrics, admin."""
