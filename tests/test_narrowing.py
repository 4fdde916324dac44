"""aroutd.manage.narrowing: a management key's API keys only narrow the tenant's scope."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from random import Random

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from aroutd.errors import Forbidden
from aroutd.manage.narrowing import (
    MSG_EXCEEDS,
    check_narrowing,
    limit_within,
    models_within,
    pattern_covered,
    providers_within,
)
from aroutd.policy import model_allowed

LONG = "a" * 201


@pytest.mark.parametrize(
    ("pattern", "by", "expected"),
    [
        pytest.param("gpt-4o", "gpt-4o", True, id="identical-bare"),
        pytest.param("openai/gpt-4o", "openai/gpt-4o", True, id="identical-canonical"),
        pytest.param("gpt-4o", "gpt-4o*", True, id="literal-by-prefix"),
        pytest.param("gpt-4o*", "gpt-4o", False, id="prefix-not-by-literal"),
        pytest.param("openai/gpt-4o-mini", "openai/gpt-4o*", True, id="canonical-prefix"),
        pytest.param("openai/*", "openai/gpt-*", False, id="wider-not-by-narrower"),
        pytest.param("openai/gpt-*", "openai/*", True, id="narrower-by-wider"),
        pytest.param("*", "openai/*", False, id="bare-star-not-by-one-provider"),
        pytest.param("openai/*", "*", True, id="literal-provider-by-bare-star"),
        pytest.param("openai/gpt-4o", "gpt-4o", True, id="literal-provider-by-bare"),
        pytest.param("*/gpt-4o", "gpt-4o", False, id="star-provider-not-by-bare"),
        pytest.param("open?i/gpt-4o", "gpt-4o", False, id="glob-provider-not-by-bare"),
        pytest.param("/gpt-4o", "gpt-4o", False, id="empty-provider-refused"),
        pytest.param("gpt-4o", "*/gpt-4o", True, id="bare-by-any-provider"),
        pytest.param("gpt-4o", "openai/gpt-4o", False, id="bare-not-by-one-provider"),
        pytest.param("gpt-*", "*/*", True, id="bare-glob-by-star-star"),
        pytest.param("*", "*/*", False, id="bare-star-admits-slashless"),
        pytest.param("ab", "p/ab", False, id="bare-not-by-short-provider"),
        pytest.param("a?c", "a*", True, id="any-by-star"),
        pytest.param("?x", "ax", False, id="any-not-by-literal"),
        pytest.param("a*", "a?*", False, id="star-not-by-any-star"),
        pytest.param("a?*", "a*", True, id="any-star-by-star"),
        pytest.param("a*", "a?", False, id="star-not-by-any"),
        pytest.param("a**b", "a*b", True, id="stars-collapse"),
        pytest.param("a*b*c", "a*c", True, id="inner-star-absorbed"),
        pytest.param("a*c", "a*b*c", False, id="missing-literal"),
        pytest.param("[ab]x", "?x", True, id="class-by-any"),
        pytest.param("?x", "[ab]x", False, id="any-not-by-class"),
        pytest.param("ax", "[ab]x", True, id="literal-by-class"),
        pytest.param("cx", "[ab]x", False, id="literal-not-in-class"),
        pytest.param("[ab]x", "[ab]x", True, id="identical-class"),
        pytest.param("[abc]x", "[ab]x", False, id="wider-class"),
        pytest.param("[a]x", "[ab]x", True, id="subset-class"),
        pytest.param("[a-c]", "[abc]", True, id="range-by-set"),
        pytest.param("[a-d]", "[abc]", False, id="range-wider-than-set"),
        pytest.param("cx", "[!ab]x", True, id="literal-by-negated"),
        pytest.param("ax", "[!ab]x", False, id="literal-excluded-by-negated"),
        pytest.param("[!ab]", "[!a]", True, id="negated-by-wider-negated"),
        pytest.param("[!a]", "[!ab]", False, id="negated-not-by-narrower-negated"),
        pytest.param("[!a]", "[b-z]", False, id="negated-not-by-finite"),
        pytest.param("[c-d]", "[!ab]", True, id="finite-by-negated"),
        pytest.param("]", "[]]", True, id="bracket-first-is-literal"),
        pytest.param("!", "[!!]", False, id="negated-bang"),
        pytest.param("[", "[", True, id="unclosed-literal"),
        pytest.param("[ab", "[ab", True, id="unclosed-identical"),
        pytest.param("[ab", "?ab", True, id="unclosed-bracket-is-one-char"),
        pytest.param("a", "[ab", False, id="unclosed-is-not-a-class"),
        pytest.param(LONG, LONG, False, id="over-long-pattern"),
        pytest.param("a", "*" + LONG, False, id="over-long-by"),
        pytest.param("", "", True, id="empty-by-empty"),
        pytest.param("", "*", True, id="empty-by-star"),
        pytest.param("*", "", False, id="star-not-by-empty"),
        pytest.param("", "*/*", False, id="empty-bare-not-by-canonical"),
    ],
)
def test_pattern_covered(pattern: str, by: str, expected: bool) -> None:
    assert pattern_covered(pattern, by) is expected


MODEL_CHARS = "ab/-!]["
PROVIDERS = ("openai", "anthropic", "a")
CLASSES = ("[ab]", "[!a]", "[!ab]", "[a-b]", "[]a]", "[!]]", "[b-a]", "[a")
atoms = st.sampled_from([*"ab/*?[]!-", *CLASSES]) | st.builds(
    lambda neg, body: f"[{neg}{body}]", st.sampled_from(["", "!"]), st.text("ab/-]!", max_size=3)
)
globs = st.text("ab/*?[]!-", max_size=6) | st.lists(atoms, max_size=4).map("".join)
patterns = globs | st.builds(str.__add__, st.sampled_from(["openai/", "*/", "?penai/"]), globs)


def edit(rnd: Random, a: str) -> str:
    """A candidate cover of `a`: mostly a light edit of it, so both outcomes occur."""
    b = rnd.choice([a, a, a, "*/" + a, "openai/" + a, a.partition("/")[2]])
    for _ in range(rnd.choice((0, 1, 1, 2, 3))):
        wild = [k for k, c in enumerate(b) if c in "*?["]
        at_wild = bool(wild) and rnd.random() < 0.5  # wildcards: the likeliest place for a bug
        k = rnd.choice(wild) if at_wild else rnd.randint(0, len(b))
        if rnd.random() < 0.25:
            b = b[:k] + rnd.choice("*ab!-") + b[k:]
        elif k < len(b):
            edits = ["*", "?", "?", "", "a", "[ab]"]
            if not at_wild:
                edits += ["b", "/", "!", *CLASSES, f"[{b[k]}]", f"[!{b[k]}]"]
            b = b[:k] + rnd.choice(edits) + b[k + 1 :]
    return b


def sample(rnd: Random, pattern: str) -> str:
    """A model that `pattern` likely admits (inexact on purpose: model_allowed is the judge)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        i += 1
        if c == "*":
            out.append("".join(rnd.choices("ab/", k=rnd.choice((0, 0, 1, 2, 3)))))
        elif c == "?" or (c == "[" and "]" in pattern[i + 1 :]):
            if c == "[":
                i = pattern.index("]", i + 1) + 1
            out.append(rnd.choice(MODEL_CHARS))
        else:
            out.append(c)
    bare = "".join(out)
    return bare if "/" in pattern else rnd.choice(PROVIDERS) + "/" + bare


def models_for(rnd: Random, pats: tuple[str, ...]) -> list[str]:
    """Samples of each pattern, and a few arbitrary strings."""
    noise = ["".join(rnd.choices(MODEL_CHARS, k=rnd.randint(0, 6))) for _ in range(4)]
    return [sample(rnd, p) for p in pats for _ in range(6)] + noise


def test_cover_is_sound() -> None:
    """Whenever a pattern is covered, every model it admits is admitted by its cover."""
    seen = {"covered": 0, "hits": 0, "total": 0}

    @settings(max_examples=300, deadline=None, database=None)
    @given(a=patterns, other=patterns, rnd=st.randoms(use_true_random=False))
    def prop(a: str, other: str, rnd: Random) -> None:
        admitted = [m for m in models_for(rnd, (a,)) if model_allowed((a,), m)]
        for b in [other, *(edit(rnd, a) for _ in range(8))]:
            covered = pattern_covered(a, b)
            event(f"covered={covered}")
            seen["total"] += 1
            seen["covered"] += covered
            for m in admitted if covered else ():
                seen["hits"] += 1
                assert model_allowed((b,), m), f"{a!r} covered by {b!r}, but {m!r} escapes"

    prop()
    assert seen["covered"] >= seen["total"] // 5, seen  # the property is not vacuous
    assert seen["hits"] >= seen["covered"], seen  # ... and covered patterns admit samples


def test_cover_is_sound_on_every_small_pattern() -> None:
    """Exhaustively: each pattern of up to 3 chars covered by one of up to 3 chars."""
    pats = ["".join(t) for n in range(4) for t in itertools.product("a/*?[]!", repeat=n)]
    models = ["".join(t) for n in range(5) for t in itertools.product("ab/[", repeat=n)]
    admits = {p: frozenset(m for m in models if model_allowed((p,), m)) for p in pats}
    covered = [(a, b) for a in pats for b in pats if pattern_covered(a, b)]
    assert [(a, b) for a, b in covered if not admits[a] <= admits[b]] == []
    assert len(covered) > 2 * len(pats)


def test_narrowed_key_never_admits_what_its_tenant_refuses() -> None:
    """A key check_narrowing accepts admits no (provider, model) its tenant refuses."""
    seen = {"accepted": 0, "admitted": 0, "total": 0}
    providers = st.lists(st.sampled_from(PROVIDERS), max_size=2, unique=True).map(tuple)

    @settings(max_examples=300, deadline=None, database=None)
    @given(
        tenant_providers=providers,
        key_providers=providers,
        key_models=st.lists(patterns, max_size=2).map(tuple),
        tenant_extra=st.lists(patterns, max_size=1).map(tuple),
        rnd=st.randoms(use_true_random=False),
    )
    def prop(
        tenant_providers: tuple[str, ...],
        key_providers: tuple[str, ...],
        key_models: tuple[str, ...],
        tenant_extra: tuple[str, ...],
        rnd: Random,
    ) -> None:
        edits = (edit(rnd, a) for a in key_models for _ in range(rnd.choice((0, 1, 1, 1, 2))))
        tenant_models = (*edits, *tenant_extra)
        seen["total"] += 1
        try:
            check_narrowing(
                tenant_providers=tenant_providers,
                tenant_models=tenant_models,
                tenant_limits={},
                providers=key_providers,
                models=key_models,
                limits={},
            )
        except Forbidden:
            return
        seen["accepted"] += 1
        key_p, key_m = key_providers or tenant_providers, key_models or tenant_models
        for m in models_for(rnd, key_m):
            for p in (*PROVIDERS, m.partition("/")[0]):
                if (not key_p or p in key_p) and model_allowed(key_m, m):
                    seen["admitted"] += 1
                    assert not tenant_providers or p in tenant_providers, (p, tenant_providers)
                    assert model_allowed(tenant_models, m), (m, key_m, tenant_models)

    prop()
    assert seen["accepted"] >= seen["total"] // 4, seen
    assert seen["admitted"] >= seen["accepted"], seen


@pytest.mark.parametrize(
    ("requested", "tenant", "expected"),
    [
        pytest.param((), (), True, id="both-any"),
        pytest.param((), ("openai",), True, id="inherit"),
        pytest.param(("openai",), (), True, id="tenant-any"),
        pytest.param(("openai",), ("openai", "anthropic"), True, id="subset"),
        pytest.param(("openai", "x"), ("openai",), False, id="extra-provider"),
    ],
)
def test_providers_within(
    requested: tuple[str, ...], tenant: tuple[str, ...], expected: bool
) -> None:
    assert providers_within(requested, tenant) is expected


@pytest.mark.parametrize(
    ("requested", "tenant", "expected"),
    [
        pytest.param((), ("gpt-*",), True, id="inherit"),
        pytest.param(("*",), (), True, id="tenant-any"),
        pytest.param(("gpt-4o", "openai/gpt-4o-mini"), ("gpt-*",), True, id="each-covered"),
        pytest.param(("gpt-4o", "claude"), ("gpt-*",), False, id="one-uncovered"),
        pytest.param(("gpt-4o", "claude"), ("gpt-*", "claude*"), True, id="by-different"),
    ],
)
def test_models_within(requested: tuple[str, ...], tenant: tuple[str, ...], expected: bool) -> None:
    assert models_within(requested, tenant) is expected


LIMIT_CASES = [
    pytest.param({"limit": 100.0}, {"limit": 150.0}, False, id="limit-above"),
    pytest.param({"limit": 100.0}, {"limit": None}, True, id="limit-inherit"),
    pytest.param({"limit": None}, {"limit": 150.0}, True, id="tenant-unlimited"),
    pytest.param({}, {"limit": 150.0}, True, id="tenant-missing"),
    pytest.param({"limit": 100.0}, {"limit": 100.0}, True, id="limit-equal"),
    pytest.param({"limit": 100.0}, {"limit": 99.5}, True, id="limit-below"),
    pytest.param({"rpm_limit": 60}, {"rpm_limit": 61}, False, id="rpm-above"),
    pytest.param({"rpm_limit": 60}, {"rpm_limit": 60}, True, id="rpm-equal"),
    pytest.param({"rpd_limit": 1000}, {"rpd_limit": 1001}, False, id="rpd-above"),
    pytest.param({"tpm_limit": 10_000}, {"tpm_limit": 20_000}, False, id="tpm-above"),
    pytest.param({"tpm_limit": 10_000}, {"tpm_limit": None}, True, id="tpm-inherit"),
    pytest.param({"tpm_limit": 10_000}, {}, True, id="nothing-requested"),
    pytest.param(
        {"limit": 100.0, "rpm_limit": 60}, {"limit": 50.0, "rpm_limit": 120}, False, id="one-of-two"
    ),
]


@pytest.mark.parametrize(("tenant", "requested", "ok"), LIMIT_CASES)
def test_limits(
    tenant: Mapping[str, float | int | None], requested: Mapping[str, float | int | None], ok: bool
) -> None:
    for name, value in requested.items():
        if len(requested) == 1:
            assert limit_within(value, tenant.get(name)) is ok
    narrow = {"tenant_providers": (), "tenant_models": (), "providers": (), "models": ()}
    if ok:
        check_narrowing(tenant_limits=tenant, limits=requested, **narrow)
    else:
        with pytest.raises(Forbidden):
            check_narrowing(tenant_limits=tenant, limits=requested, **narrow)


@pytest.mark.parametrize(
    ("providers", "models", "limits"),
    [
        pytest.param(("anthropic",), (), {}, id="provider"),
        pytest.param((), ("claude-*",), {}, id="model"),
        pytest.param((), (), {"limit": 10.5}, id="limit"),
    ],
)
def test_check_narrowing_forbids_with_the_public_message(
    providers: tuple[str, ...], models: tuple[str, ...], limits: dict[str, float]
) -> None:
    with pytest.raises(Forbidden) as info:
        check_narrowing(
            tenant_providers=("openai",),
            tenant_models=("gpt-*",),
            tenant_limits={"limit": 10.0},
            providers=providers,
            models=models,
            limits=limits,
        )
    assert info.value.message == MSG_EXCEEDS == "requested permissions exceed tenant scope"
    assert info.value.status == 403


def test_check_narrowing_accepts_a_narrower_key() -> None:
    check_narrowing(
        tenant_providers=("openai", "anthropic"),
        tenant_models=("gpt-*", "anthropic/*"),
        tenant_limits={"limit": 10.0, "rpm_limit": 60},
        providers=("openai",),
        models=("gpt-4o", "openai/gpt-4o-mini", "anthropic/claude-3"),
        limits={"limit": 5.0, "rpm_limit": None, "tpm_limit": 1000},
    )
