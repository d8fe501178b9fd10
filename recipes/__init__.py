"""Recipe templates (one folder per recipe) shipped as package data."""
