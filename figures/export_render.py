"""The figure renderer: Kaleido with the system Chromium, one browser per process.

Starting a browser costs seconds, a warm render a fraction of a second, so one browser
per process is started on first use and reused. Kaleido's own sync server is not
thread-safe (concurrent callers can receive each other's images), so this module runs
its own event loop thread, hands every render its own future and serialises renders
with a lock. ``BROWSER_PATH`` overrides where Chromium is looked for.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout

import plotly.graph_objects as go

from data.errors import redacted_traceback
from figures.export_settings import (
    CHROMIUM_HINT,
    DEFAULT_TIMEOUT_S,
    FORMATS,
    ExportError,
    RendererUnavailable,
)

log = logging.getLogger("icb.export")

# --------------------------------------------------------------------- renderer


def browser_path() -> str | None:
    """The Chromium executable Kaleido will use: ``BROWSER_PATH`` or the system's."""
    from choreographer.browsers.chromium import Chromium

    explicit = os.environ.get("BROWSER_PATH")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    try:
        return str(Chromium.find_browser(skip_local=False) or "") or None
    except Exception:  # any failure of the search means "not found"
        return None


def _missing_browser() -> RendererUnavailable:
    explicit = os.environ.get("BROWSER_PATH")
    where = (
        f"BROWSER_PATH={explicit!r} is not an executable file"
        if explicit
        else "no Chromium or Chrome was found on the server"
    )
    return RendererUnavailable(
        f"Figures cannot be rendered on the server: {where}.", CHROMIUM_HINT
    )


#: Niceness of the export renderer thread and its Chromium (0 = normal, 19 = lowest).
RENDER_NICENESS = 10


def _lower_priority(tasks: Sequence[int]) -> None:
    """Set the niceness of these Linux tasks (threads) to ``RENDER_NICENESS``."""
    for task in tasks:
        try:
            if os.getpriority(os.PRIO_PROCESS, task) < RENDER_NICENESS:
                os.setpriority(os.PRIO_PROCESS, task, RENDER_NICENESS)
        except (AttributeError, OSError):  # not Linux, gone, or not permitted
            continue


class _Renderer:
    """One headless Chromium with its own event loop thread."""

    def __init__(self, path: str, timeout: float):
        import kaleido

        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self._serve, name="icb-kaleido", daemon=True
        )
        self.thread.start()

        async def start():
            # mathjax=False: the default loads MathJax from a CDN, which a lab
            # server without internet would wait for on every page load.
            k = kaleido.Kaleido(n=1, timeout=timeout, mathjax=False, path=path)
            await k.open()
            return k

        try:
            self.kaleido = self._run(start(), timeout)
        except BaseException:
            self._stop_loop()
            raise
        self.lower_browser_priority()

    def _serve(self) -> None:
        # Exports are batch work: this thread yields the CPU to the interactive
        # callbacks of every user on a shared server (so does Chromium, below).
        _lower_priority([threading.get_native_id()])
        self.loop.run_forever()

    def lower_browser_priority(self) -> None:
        """Renice Chromium's processes (every thread) to ``RENDER_NICENESS``.

        Processes Chromium starts later (renderers, forked from its zygote) inherit
        the niceness; an unprivileged service user cannot raise it back.
        """
        import psutil

        browser = getattr(self.kaleido, "subprocess", None)  # choreographer's Popen
        try:
            if browser is not None:
                root = psutil.Process(browser.pid)
                processes = [root, *root.children(recursive=True)]
            else:  # only the worker's Chromium children, not its background jobs
                processes = [
                    p
                    for p in psutil.Process(self.pid).children(recursive=True)
                    if "chrom" in p.name().lower()
                ]
        except psutil.Error:
            return
        tasks = []
        for child in processes:
            try:
                tasks += [t.id for t in child.threads()]
            except psutil.Error:
                continue
        _lower_priority(tasks)

    def _run(self, coroutine, timeout: float):
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise

    def render(self, fig: dict, opts: dict, timeout: float) -> bytes:
        # Chromium starts processes as it needs them (and as root may reset
        # priorities): renice what is there before every render.
        self.lower_browser_priority()
        return self._run(self.kaleido.calc_fig(fig, opts=opts), timeout)

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def close(self) -> None:
        if os.getpid() != self.pid:
            return  # a forked child does not own the parent's browser
        try:
            self._run(self.kaleido.close(), 5)
        except Exception:  # a hung or dead browser: make sure no process is left
            process = getattr(self.kaleido, "subprocess", None)
            if process is not None and process.poll() is None:
                process.kill()
        self._stop_loop()


# One renderer per process, created on first export (so after gunicorn forks), and a
# lock: renders are serialised because a Chromium tab renders one figure at a time
# and the renderer must not be started twice by concurrent first requests.
_LOCK = threading.Lock()
_RENDERER: _Renderer | None = None


def _forget_after_fork() -> None:
    global _LOCK, _RENDERER
    _LOCK = threading.Lock()
    _RENDERER = None


os.register_at_fork(after_in_child=_forget_after_fork)


def shutdown_renderer() -> None:
    """Close this process's browser (also called at exit)."""
    global _RENDERER
    with _LOCK:
        renderer, _RENDERER = _RENDERER, None
    if renderer is not None:
        renderer.close()


def _shutdown_at_exit() -> None:
    # the browser library logs while closing; at exit the log streams may already
    # be closed (pytest), which would print "Logging error" noise
    logging.raiseExceptions = False
    shutdown_renderer()


atexit.register(_shutdown_at_exit)


def render(
    fig: dict | go.Figure,
    *,
    fmt: str,
    width: float,
    height: float,
    scale: float = 1.0,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> bytes:
    """Render a figure with this process's Chromium; thread-safe.

    Raises
    ------
    RendererUnavailable
        Chromium is missing or does not start (message has the install hint).
    ExportError
        The render failed or took longer than ``timeout`` seconds (the browser is
        then restarted on the next export).
    """
    global _RENDERER
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}.", "use png, svg or pdf.")
    spec = fig if isinstance(fig, dict) else fig.to_dict()
    opts = {"format": fmt, "width": width, "height": height, "scale": scale}
    if not _LOCK.acquire(timeout=timeout * 4):
        raise ExportError(
            "the server is busy with other exports.", "try again in a minute."
        )
    try:
        if _RENDERER is None:
            path = browser_path()
            if path is None:
                raise _missing_browser()
            try:
                _RENDERER = _Renderer(path, timeout)
            except FutureTimeout:
                raise RendererUnavailable(
                    f"Chromium ({path}) did not start within {timeout:g} s.",
                    CHROMIUM_HINT,
                ) from None
            except Exception as err:
                raise RendererUnavailable(
                    f"Chromium ({path}) could not be started: {err}", CHROMIUM_HINT
                ) from err
        try:
            return _RENDERER.render(spec, opts, timeout)
        except (FutureTimeout, TimeoutError):
            broken, _RENDERER = _RENDERER, None
            threading.Thread(target=broken.close, daemon=True).start()
            raise ExportError(
                f"rendering took longer than {timeout:g} s and was stopped.",
                "export a smaller size, or use 'sample' for figures with many points.",
            ) from None
        except Exception as err:
            log.error("figure render failed: %s", redacted_traceback(err))
            if "axis scaling" in str(err):  # plotly: margins and bands took it all
                raise ExportError(
                    f"at {width:g} x {height:g} px this figure's text (title, key "
                    "numbers, legend, caption) leaves no room for the plot.",
                    "choose a larger size or a slide/double-column preset, or turn "
                    "the caption footnote off.",
                ) from err
            raise ExportError(
                f"the figure could not be rendered ({type(err).__name__}).",
                "try another format or size; the error was logged on the server.",
            ) from err
    finally:
        _LOCK.release()


def renderer_running() -> bool:
    """True when this process has a started browser (for the health check)."""
    return _RENDERER is not None
