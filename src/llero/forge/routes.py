"""HTTP routes; each names its permission and calls the service."""

from fastapi import APIRouter

router = APIRouter()
