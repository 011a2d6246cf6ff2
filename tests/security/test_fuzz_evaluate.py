"""Property tests of compliance.evaluate.evaluate against the shipped catalogue.

The one answer that must never be wrong is "patched". Observations are drawn with builds
near the catalogue's real ones (so every grading path is reached), with garbage, with AD
values in every form, arbitrary roles, installed updates, mitigations, failures and ages.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import event, example, given
from hypothesis import strategies as st

from compliance.builds import (
    BuildParseError,
    encode_version_number,
    parse_ad_build,
    parse_admin_display_version,
    parse_dotted,
)
from compliance.catalog import load_catalog
from compliance.evaluate import Policy, evaluate
from compliance.failures import verdict_reason
from compliance.models import (
    AppPoolState,
    Build,
    BuildSource,
    Failure,
    Flag,
    Host,
    InstalledUpdate,
    MitigationState,
    Observation,
    Reason,
    ServiceState,
    Status,
    Verdict,
    WebConfigFile,
    WebConfigState,
)

CATALOG = load_catalog()
ADVISORY = CATALOG.advisory
AS_OF = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=30)

REAL_BUILDS = sorted(
    {release.build for release in CATALOG.releases}
    | {release.cu_base for release in CATALOG.releases}
    | {fix.build for rule in ADVISORY.products for fix in rule.fixes}
)
CU_BASES = sorted({group.base for group in CATALOG.groups})
FIX_KBS = sorted({fix.kb for rule in ADVISORY.products for fix in rule.fixes})
ROLE_NAMES = ("Mailbox", "ClientAccess", "UnifiedMessaging", "HubTransport", "FrontendTransport",
              "Cafe", "Edge", "Monitoring", "unifiedmessaging", "")
MITIGATION_NAMES = sorted({name for m in ADVISORY.mitigations for name in m.names})


def _lowest_patched_build_per_line() -> dict[tuple[int, int], Build]:
    """Per major.minor line, the lowest build any rule could call patched (an upper bound
    on "not patched", derived from the advisory's fixes and fixed_from CUs)."""
    lowest: dict[tuple[int, int], Build] = {}
    for group in CATALOG.groups:
        rule = ADVISORY.rule(group.product)
        if rule is None:
            continue
        candidates = [fix.build for fix in rule.fixes]
        first = CATALOG.cu_base(rule.product, rule.fixed_from) if rule.fixed_from else None
        if first is not None:
            candidates.append(first)
        for build in candidates:
            if build.line == group.base.line:
                known = lowest.get(build.line)
                lowest[build.line] = build if known is None else min(known, build)
    return lowest


LOWEST_PATCHED = _lowest_patched_build_per_line()

# -- strategies ---------------------------------------------------------------------------------


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """one_of with weights (one_of picks its branches about evenly, and drops repeats)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(table.__getitem__)



@st.composite
def near_build(draw: st.DrawFn, pool: list[Build] = REAL_BUILDS) -> Build:
    base = draw(st.sampled_from(pool))
    shift = st.sampled_from([0, 0, 0, 1, -1, 2, -2, 5, -5, 100, -100, 30000])
    minor = max(0, base.minor + draw(st.sampled_from([0, 0, 0, 0, 1, -1])))
    revision = base.revision if base.revision is not None else 0
    return Build(base.major, minor, max(0, base.build + draw(shift)), max(0, revision + draw(shift)))


def _dotted(build: Build, padded: bool) -> str:
    if padded:
        return f"{build.major:02d}.{build.minor:02d}.{build.build:04d}.{build.revision or 0:03d}"
    return str(build)


garbage = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.sampled_from("0123456789.٠١٢٣ \t\u00a0-+_,:()VersionBuild"), max_size=30),
    st.sampled_from(["", " ", "15.1.2176", "15.1.2176.9.1", "15.1.2176.9a", "15.1..9", "v15.1.2176.9",
                     "15,1,2176,9", "١٥.١.٢١٧٦.٩", "15.1.2176.-9", "0x0F.1.2176.9", "15.1.2176.99999",
                     "1" * 5000, "15.1.2176.9\x00", "Version 15.1 (Build 2176.9)", "1942063232"]),
)

plain_dotted = st.builds(_dotted, near_build(), st.booleans())
exsetup_text = weighted(
    (5, plain_dotted),
    (1, st.builds(lambda b, lead, trail: f"{lead}{b}{trail}", near_build(),
                  st.sampled_from(["", " ", "\t"]), st.sampled_from(["", " ", "\r\n"]))),
    (2, st.none()),
    (2, garbage),
)


@st.composite
def ad_text(draw: st.DrawFn) -> str:
    build = draw(weighted((3, st.sampled_from(CU_BASES)), (1, near_build(CU_BASES))))
    revision = build.revision or 0
    form = draw(st.sampled_from(["serial", "admin", "number", "dotted", "garbage"]))
    if form == "serial":
        return f"Version {build.major}.{build.minor} (Build {build.build + 30000}.{revision})"
    if form == "admin":
        return f"Version {build.major}.{build.minor} (Build {build.build}.{revision})"
    if form == "number":
        return str(encode_version_number(build))
    if form == "dotted":
        return str(build)
    return draw(garbage)


kb_text = st.one_of(st.sampled_from(FIX_KBS), st.sampled_from(["kb5000871", " KB5000871 ", "KB500087",
                                                              "KB5000871x", ""]), st.text(max_size=12))
installed_updates = st.lists(
    st.builds(InstalledUpdate, kb_text, st.text(max_size=20), st.one_of(st.none(), st.text(max_size=10))),
    max_size=3,
).map(tuple)
state_text = st.one_of(st.none(), st.sampled_from(["Stopped", "stopped", "Running", "Disabled", "Auto",
                                                   "Started", ""]), st.text(max_size=8))
mitigation_name = st.one_of(st.sampled_from(MITIGATION_NAMES), st.text(max_size=12))
mitigations = st.one_of(st.none(), st.builds(
    MitigationState,
    rewrite_rules=st.lists(mitigation_name, max_size=3).map(tuple),
    services=st.dictionaries(mitigation_name, st.builds(ServiceState, state_text, state_text), max_size=3),
    app_pools=st.dictionaries(mitigation_name, st.builds(AppPoolState, state_text,
                                                         st.one_of(st.none(), st.booleans())), max_size=3),
))
some_failure = st.builds(Failure, st.text(max_size=20), st.text(max_size=40), st.text(max_size=20))
# Mostly no failure and a fresh time, so that the grading paths behind them are reached too.
failures = weighted((4, st.none()), (1, some_failure))
observed_at = weighted(
    (6, st.integers(-86400, 0).map(lambda s: AS_OF + timedelta(seconds=s))),
    (3, st.integers(-int(WINDOW.total_seconds()), int(WINDOW.total_seconds())).map(
        lambda s: AS_OF + timedelta(seconds=s))),
    (1, st.none()),
)
policies = st.one_of(
    st.just(Policy()),
    st.builds(Policy, st.integers(0, 20 * 86400).map(lambda s: timedelta(seconds=s)),
              st.integers(0, 7200).map(lambda s: timedelta(seconds=s))),
)
roles = st.one_of(st.none(), st.frozensets(st.sampled_from(ROLE_NAMES)))
web_configs = st.one_of(st.none(), st.lists(st.builds(WebConfigFile, st.text(max_size=40),
                                                      st.sampled_from(WebConfigState)),
                                            max_size=4).map(tuple))


@st.composite
def observations(draw: st.DrawFn, *, exsetup: st.SearchStrategy[str | None] = exsetup_text,
                 ad: bool = True, updates: bool = True,
                 failure: st.SearchStrategy[Failure | None] = failures) -> Observation:
    host = Host(
        name=draw(st.text(min_size=1, max_size=12)),
        roles=draw(roles),
        ad_build=draw(st.one_of(st.none(), ad_text())) if ad else None,
    )
    return Observation(
        host=host,
        observed_at=draw(observed_at),
        source=draw(st.sampled_from(["winrm", "import:x.json", "demo"])),
        exsetup_version=draw(exsetup),
        admin_display_version=draw(st.one_of(st.none(), ad_text())) if ad else None,
        installed_updates=draw(installed_updates) if updates else (),
        mitigations=draw(mitigations),
        indicators=tuple(draw(st.lists(st.text(max_size=20), max_size=2))),
        failure=draw(failure),
        probe_errors=tuple(draw(st.lists(st.text(max_size=20), max_size=2))),
        log_window_days=draw(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))),
        indicators_truncated=draw(st.booleans()),
        web_configs=draw(web_configs),
    )


# -- helpers ------------------------------------------------------------------------------------


def _dotted_or_none(text: str | None) -> Build | None:
    if text is None:
        return None
    try:
        return parse_dotted(text)
    except BuildParseError:
        return None


def _parses(parser: object, text: str | None) -> bool:
    if text is None or not text.strip():
        return False
    try:
        parser(text)  # type: ignore[operator]
    except BuildParseError:
        return False
    return True


def _grade(obs: Observation, policy: Policy) -> Verdict:
    verdict = evaluate(obs, CATALOG, AS_OF, policy)
    event(f"status={verdict.status.value} {verdict.unknown_reason or verdict.build_source}")
    assert isinstance(verdict, Verdict)
    assert isinstance(verdict.status, Status)
    assert verdict.host == obs.host.name
    assert isinstance(verdict.action, str) and verdict.action.strip(), verdict
    assert isinstance(verdict.reason, str) and verdict.reason.strip(), verdict
    assert verdict.as_of == AS_OF
    if verdict.status is Status.UNKNOWN:
        assert verdict.unknown_reason is not None
    return verdict


# -- properties ---------------------------------------------------------------------------------


@given(observations(), policies)
def test_evaluate_always_answers_and_never_calls_garbage_patched(obs: Observation, policy: Policy) -> None:
    verdict = _grade(obs, policy)
    exsetup = _dotted_or_none(obs.exsetup_version)
    # The web.config files are about availability: flagged when one is unresolved, and never
    # a reason for another status.
    broken = any(f.state is WebConfigState.UNRESOLVED for f in obs.web_configs or ())
    assert (Flag.WEB_CONFIG_BROKEN in verdict.flags) is broken
    assert _grade(replace(obs, web_configs=None), policy).status is verdict.status

    if obs.failure is not None:  # (b)
        assert verdict.status is Status.UNKNOWN
        assert verdict.unknown_reason is verdict_reason(obs.failure.reason)
    if obs.observed_at is not None and AS_OF - obs.observed_at > policy.max_age:  # (c)
        assert verdict.status is not Status.PATCHED
        assert verdict.status is Status.UNKNOWN
    if obs.observed_at is None or obs.observed_at - AS_OF > policy.clock_skew:
        assert verdict.status is Status.UNKNOWN
    if verdict.status is not Status.PATCHED:
        return

    # Patched: there is a fresh, successful collection and a build it rests on.
    assert obs.failure is None and obs.observed_at is not None
    assert verdict.build is not None and verdict.build_source is not None
    assert verdict.cves_open == ()
    if verdict.build_source is BuildSource.EXSETUP:
        assert exsetup is not None and str(exsetup) == verdict.build
    elif verdict.build_source is BuildSource.INSTALLED_UPDATE:
        kbs = {update.kb.strip().upper() for update in obs.installed_updates}
        assert kbs & set(FIX_KBS), (kbs, verdict)
    else:
        assert exsetup is None  # a readable ExSetup version always wins over AD
        assert _parses(parse_ad_build, obs.host.ad_build) or _parses(
            parse_admin_display_version, obs.admin_display_version)
    # Never below the lowest fixing build of its line when ExSetup was read.
    if exsetup is not None:
        assert exsetup.line in LOWEST_PATCHED and exsetup >= LOWEST_PATCHED[exsetup.line], verdict


unparseable = st.one_of(st.none(), garbage).filter(lambda text: _dotted_or_none(text) is None)


@given(observations(exsetup=unparseable, ad=False, updates=False), policies)
@example(Observation(Host("EX1"), AS_OF, "winrm", exsetup_version="15.1.2176.9 KB5000871"), Policy())
@example(Observation(Host("EX1"), AS_OF, "winrm", exsetup_version="١٥.١.٢١٧٦.٩"), Policy())
@example(Observation(Host("EX1"), AS_OF, "winrm", exsetup_version="15.1.2176.99999"), Policy())
def test_a_host_without_a_readable_build_is_never_patched(obs: Observation, policy: Policy) -> None:
    """(a) ExSetup unreadable, no AD build, no installed update: nothing proves a fix."""
    verdict = _grade(obs, policy)
    assert verdict.status is not Status.PATCHED
    assert verdict.status is Status.UNKNOWN, verdict  # no build: not even "not applicable"


@given(observations(failure=some_failure), policies)
def test_a_failed_collection_is_never_patched(obs: Observation, policy: Policy) -> None:
    """(b) Even with a patched ExSetup build in the same observation."""
    verdict = _grade(obs, policy)
    assert verdict.status is Status.UNKNOWN
    assert obs.failure is not None
    assert verdict.unknown_reason is verdict_reason(obs.failure.reason)


@st.composite
def stale(draw: st.DrawFn) -> tuple[Observation, Policy]:
    obs = draw(observations(failure=st.none()))
    policy = draw(policies)
    too_old = draw(st.integers(1, int((WINDOW + policy.max_age).total_seconds())))
    moment = AS_OF - policy.max_age - timedelta(seconds=too_old)
    return Observation(**{**obs.__dict__, "observed_at": moment}), policy


@given(stale())
def test_a_stale_observation_is_never_patched(case: tuple[Observation, Policy]) -> None:
    """(c) Older than policy.max_age: unknown (stale), whatever it says."""
    obs, policy = case
    verdict = _grade(obs, policy)
    assert verdict.status is Status.UNKNOWN
    assert verdict.unknown_reason is Reason.STALE


@given(near_build(), st.booleans(), policies)
def test_a_fresh_exsetup_build_is_graded_by_its_own_line(build: Build, padded: bool, policy: Policy) -> None:
    """Fresh, no failure, no AD: the verdict comes from the ExSetup build alone, and is
    never "patched" below the lowest fixing build of the build's line."""
    obs = Observation(Host("EX1", roles=frozenset({"Mailbox", "UnifiedMessaging"})), AS_OF, "winrm",
                      exsetup_version=_dotted(build, padded))
    verdict = _grade(obs, policy)
    if _dotted_or_none(obs.exsetup_version) is None:  # a part too long for the file version
        assert verdict.status is Status.UNKNOWN and verdict.unknown_reason is Reason.UNPARSEABLE_BUILD
        return
    assert verdict.build_source is BuildSource.EXSETUP
    if verdict.status is Status.PATCHED:
        assert build >= LOWEST_PATCHED[build.line]
    if build.line not in LOWEST_PATCHED or build < LOWEST_PATCHED[build.line]:
        assert verdict.status is not Status.PATCHED


@given(observations(exsetup=unparseable, failure=st.none()), policies)
def test_without_exsetup_only_a_readable_ad_build_or_a_recorded_fix_can_prove_patched(
        obs: Observation, policy: Policy) -> None:
    """ExSetup unreadable: "patched" needs a CU level read from AD (a CU that contains the
    fixes) or the CU's fixing KB recorded as installed; never the garbage itself."""
    verdict = _grade(obs, policy)
    if verdict.status is not Status.PATCHED:
        return
    assert verdict.build_source is not BuildSource.EXSETUP
    assert _parses(parse_ad_build, obs.host.ad_build) or _parses(
        parse_admin_display_version, obs.admin_display_version)
    if verdict.build_source is BuildSource.INSTALLED_UPDATE:
        assert {u.kb.strip().upper() for u in obs.installed_updates} & set(FIX_KBS)
