"""edge-agent: an asyncio edge gateway agent for industrial anomaly detection."""

__version__ = "0.1.0"
