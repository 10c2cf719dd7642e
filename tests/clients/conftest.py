"""Fixtures for the real-client scenarios.

- `proxy_bin` (session): $PROXY_BIN, or `cargo build --release -p kafka-iggy-proxy` once.
- `backend`: every test that uses it runs once per back end, "memory" and "iggy"; the iggy runs
  use one real Iggy server for the session (IGGY_SERVER_BIN, fresh data directory, free port) and
  are skipped with "IGGY_SERVER_BIN not set" without it. Tests marked `iggy_only` run on iggy only.
- `proxy`: a proxy on free ports against `backend`, ready (/readyz) before the test starts;
  yields the bootstrap address. `proxy_factory` starts more (or restarts) for one test.
  On teardown each proxy is stopped and the test fails if its log contains "panicked".
- At the end, a table of which back ends and clients ran and which were skipped, and why.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

import harness

BACKENDS = ("memory", "iggy")
IGGY_SKIP_REASON = "IGGY_SERVER_BIN not set"


def pytest_configure(config):
    # markers `client` and `iggy_only` are declared in pytest.ini
    config._iggy_state = {"used": False, "detail": ""}


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        kinds = ["iggy"] if metafunc.definition.get_closest_marker("iggy_only") else list(BACKENDS)
        metafunc.parametrize("backend", kinds, indirect=True)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def proxy_bin() -> Path:
    return harness.proxy_binary()


@pytest.fixture(scope="session")
def _iggy_server_holder(tmp_path_factory, pytestconfig):
    """Starts the real Iggy server on first use; stopped at the end of the session."""
    holder: dict = {}

    def get() -> harness.IggyServer | None:
        if "server" not in holder:
            binary = os.environ.get("IGGY_SERVER_BIN")
            if not binary:
                holder["server"] = None
            else:
                path = Path(binary)
                if not path.is_file() or not os.access(path, os.X_OK):
                    raise harness.HarnessError(f"IGGY_SERVER_BIN={binary} is not an executable file")
                server = harness.IggyServer(path, tmp_path_factory.mktemp("iggy-server"))
                holder["server"] = server  # set before start, so teardown stops a half-started one
                server.start()
                pytestconfig._iggy_state.update(
                    used=True, detail=f"{binary} on {server.address}, data in {server.data_dir}")
        return holder["server"]

    yield get
    server = holder.get("server")
    if server is not None:
        server.stop()


@pytest.fixture
def backend(request, _iggy_server_holder) -> harness.Backend:
    kind = request.param
    if kind == "memory":
        return harness.Backend("memory")
    server = _iggy_server_holder()
    if server is None:
        pytest.skip(IGGY_SKIP_REASON)
    if not server.process.alive():
        pytest.fail(f"the Iggy server died earlier in the session:\n{server.process.tail()}")
    return harness.Backend("iggy", server)


@pytest.fixture
def proxy_factory(request, proxy_bin, backend, tmp_path):
    """Starts proxies for this test: `proxy_factory(name=..., extra_args=[...])` returns a ready
    `harness.Proxy`. All are stopped at teardown; a "panicked" in any log fails the test."""
    started: list[harness.Proxy] = []
    request.node._proxies = started

    def start(name: str | None = None, extra_args=()) -> harness.Proxy:
        proxy = harness.Proxy(proxy_bin, backend, tmp_path,
                              name=name or f"proxy-{len(started)}", extra_args=extra_args)
        started.append(proxy)
        return proxy.start()

    yield start
    for proxy in started:
        proxy.stop(graceful=True)
    panics = [(p.name, p.panic_excerpt()) for p in started]
    panics = [(name, excerpt) for name, excerpt in panics if excerpt]
    if panics:
        pytest.fail("proxy panicked:\n" + "\n".join(
            f"--- {name} ({tmp_path}) ---\n{excerpt}" for name, excerpt in panics), pytrace=False)


@pytest.fixture(scope="session")
def java_jar():
    """The Java kafka-clients driver (tests/java), built once per session."""
    harness.require_tool("java")
    harness.require_tool("mvn")
    return harness.java_driver_jar()


@pytest.fixture(scope="session")
def java_streams_jar():
    """The Kafka Streams app (tests/java-streams), built once per session."""
    harness.require_tool("java")
    harness.require_tool("mvn")
    return harness.java_streams_jar()


@pytest.fixture
def proxy(proxy_factory) -> str:
    """Bootstrap address (HOST:PORT) of a ready proxy against `backend`."""
    return proxy_factory().bootstrap


# ----------------------------------------------------------------------------- reporting


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        # Attach the tail of each proxy log used by the test, for diagnosis.
        for proxy in getattr(item, "_proxies", []):
            if proxy.process is not None:
                report.sections.append((f"{proxy.name} log (tail)", proxy.process.tail(80)))


def _client_of(item) -> str:
    marker = item.get_closest_marker("client")
    return marker.args[0] if marker else Path(str(item.fspath)).stem


def _backend_of(item) -> str:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("backend", "-") if callspec else "-"


def pytest_collection_modifyitems(session, config, items):
    config._item_keys = {item.nodeid: (_client_of(item), _backend_of(item)) for item in items}


def pytest_runtest_logreport(report):
    """Folds the setup/call/teardown reports of each test into one outcome for the table."""
    state = _outcomes.setdefault(report.nodeid, {"outcome": None, "reason": ""})
    if report.failed:
        state["outcome"] = "failed"
    elif report.skipped and state["outcome"] != "failed":
        state["outcome"] = "skipped"
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        state["reason"] = reason.removeprefix("Skipped: ")
    elif report.when == "call" and report.passed and state["outcome"] is None:
        state["outcome"] = "passed"


_outcomes: dict[str, dict] = {}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    keys = getattr(config, "_item_keys", {})
    results: dict = defaultdict(lambda: defaultdict(int))
    reasons: dict = defaultdict(set)
    for nodeid, state in _outcomes.items():
        key = keys.get(nodeid)
        if key is None or state["outcome"] is None:
            continue
        results[key][state["outcome"]] += 1
        if state["outcome"] == "skipped":
            reasons[key].add(state["reason"])
    if not results:
        return
    tr = terminalreporter
    bar = "=" * 100
    tr.write_line("")
    tr.write_line(bar, bold=True)
    tr.write_line("CLIENT SCENARIOS: which back ends and clients ran", bold=True)
    tr.write_line(bar, bold=True)
    iggy = config._iggy_state
    if iggy["used"]:
        tr.write_line(f"REAL IGGY: used ({iggy['detail']})", green=True, bold=True)
    elif os.environ.get("IGGY_SERVER_BIN"):
        tr.write_line("REAL IGGY: IGGY_SERVER_BIN set but no iggy scenario ran", yellow=True, bold=True)
    else:
        tr.write_line("!!! REAL IGGY: NOT USED - IGGY_SERVER_BIN not set: every iggy scenario was "
                      "SKIPPED; only the memory back end was tested !!!", red=True, bold=True)
    tr.write_line("")
    header = f"{'client':<28} {'backend':<8} {'passed':>6} {'failed':>6} {'skipped':>7}  status / skip reason"
    tr.write_line(header, bold=True)
    tr.write_line("-" * len(header))
    for (client, backend) in sorted(results):
        r = results[(client, backend)]
        passed, failed, skipped = r["passed"], r["failed"], r["skipped"]
        if failed:
            status, colour = "FAILED", {"red": True}
        elif skipped and not passed:
            status, colour = "SKIPPED", {"yellow": True}
        elif skipped:
            status, colour = "PARTLY SKIPPED", {"yellow": True}
        else:
            status, colour = "ran", {"green": True}
        why = "; ".join(sorted(reasons.get((client, backend), ())))
        line = f"{client:<28} {backend:<8} {passed:>6} {failed:>6} {skipped:>7}  {status}"
        if why:
            line += f" ({why})"
        tr.write_line(line, **colour)
    tr.write_line(bar, bold=True)
