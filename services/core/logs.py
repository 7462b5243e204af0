"""Structured logging for every service: key=value on a terminal, JSON lines in production."""

from __future__ import annotations

import logging
import sys

import structlog


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to ``sys.stderr`` as it is when a record is written, not as it was
    when logging was configured: a command run in-process (a CLI invoked by a test or an
    embedding program) may have swapped it meanwhile and closed the stream it swapped in."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    """Route structlog and the libraries' stdlib logs to stderr in one format.

    Library loggers (faust, aiokafka, kafka) are held at WARNING: their INFO chatter about
    every rebalance step would drown the pipeline's own progress lines.
    """
    renderer = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("faust", "mode", "aiokafka", "kafka", "uvicorn.access", "jieba", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
