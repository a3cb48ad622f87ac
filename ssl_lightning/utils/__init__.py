"""Neutral helpers that every layer may import (they import nothing else of ssl_lightning)."""
