"""The Asterisk nodes behind Kamailio: drain, undrain, status."""
