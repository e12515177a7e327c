"""golfkit: reproduce, check and submit OpenAI Parameter Golf record-track submissions."""

__version__ = "0.1.0"
