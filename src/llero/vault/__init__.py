"""The vault: secrets encrypted with a fresh data key each, wrapped by a key-encryption key (KEK).

envelope.py seals and opens single values, keyring.py loads the KEKs, service.py stores secrets and
their versions, and rotation.py moves every data key to a new KEK.
"""
