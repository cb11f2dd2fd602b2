"""Request and response bodies of the vault routes."""

from typing import Annotated

from pydantic import Field, SecretStr

from llero.web.schemas import RequestModel, ResponseModel

# A 32-byte key is 44 characters of base64; the bound leaves room for surrounding whitespace.
MASTER_KEY_TEXT_MAX = 128


class UnsealRequest(RequestModel):
    master_key: Annotated[
        SecretStr,
        Field(
            min_length=1,
            max_length=MASTER_KEY_TEXT_MAX,
            description="The vault's master key in base64, as master.key holds it.",
            json_schema_extra={"writeOnly": True},
        ),
    ]


class Unsealed(ResponseModel):
    status: str = Field(description="Always unsealed.")
    kek_id: str = Field(description="The id of the current key-encryption key.")
