"""Kiosks at central: official alerts sent to the kiosks of the sites they cover."""
