"""Validation: small named rules that judge a reading against its meter and history."""
