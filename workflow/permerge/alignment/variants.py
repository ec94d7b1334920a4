"""Matching options ("variants") of the method, validated from plain config mappings.

A variant says which permutations are computed (``components``) and how: the attention matcher, whether
Q/K get their own within-head permutation, which residual nodes drive the residual matching, and which
fraction of the statistics data is used, and what maps each head takes after the head assignment (``within_head``: its permutation only, or one rotation
for Q/K and one for V/O, ``permerge.alignment.headmaps``), and from what the permutations are computed (``method``:
activation correlations, the paper; ``weight``, data-free weight matching; ``hybrid``, weight matching started
from the activation permutations). The empty component set is vanilla averaging. A method may fix the value
of an option it has no other use for (``matchers.METHOD``: weight matching solves the residual permutation
from every weight of the stream, ``residual: all``, and reads no statistics); another value is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from permerge.alignment import headmaps, matchers

COMPONENTS: frozenset[str] = frozenset({"ff", "attn", "res", "pooler"})
# the allowed values come from the matcher registry (permerge.alignment.matchers), where each is declared once
ATTENTION_MODES: tuple[str, ...] = tuple(matchers.ATTENTION)
QK_MODES: tuple[str, ...] = matchers.QK
RESIDUAL_MODES: tuple[str, ...] = tuple(matchers.RESIDUAL)
METHODS: tuple[str, ...] = matchers.METHODS
WITHIN_HEAD: tuple[str, ...] = headmaps.WITHIN_HEAD
VARIANT_KEYS: tuple[str, ...] = (
    "attention",
    "components",
    "method",
    "qk",
    "residual",
    "stats_fraction",
    "within_head",
)

_CHOICES = {
    "attention": ATTENTION_MODES,
    "qk": QK_MODES,
    "residual": RESIDUAL_MODES,
    "method": METHODS,
    "within_head": WITHIN_HEAD,
}


class VariantError(ValueError):
    """An invalid variant description; the message names the variant and the offending key."""


@dataclass(frozen=True)
class Variant:
    components: frozenset[str] = frozenset()
    attention: str = "head_perm"
    qk: str = "shared"
    residual: str = "all"
    stats_fraction: float | None = None  # None: the task's default (config.stats_fraction)
    method: str = "activation"  # activation | weight (data-free) | hybrid
    within_head: str = "permutation"  # permutation | orthogonal (permerge.alignment.headmaps)

    def __post_init__(self) -> None:
        # Direct construction is validated like from_mapping, so an invalid Variant cannot exist.
        object.__setattr__(self, "components", frozenset(self.components))
        _validate(self.__dict__, "variant")

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any], name: str = "variant") -> Variant:
        if not isinstance(d, Mapping):
            raise VariantError(f"variant {name!r}: expected a mapping of options, got {type(d).__name__}")
        unknown = sorted(str(k) for k in d if k not in VARIANT_KEYS)
        if unknown:
            raise VariantError(f"variant {name!r}: unknown option {unknown[0]!r} (allowed: {', '.join(VARIANT_KEYS)})")
        kwargs: dict[str, Any] = {}
        if "components" in d:
            comps = d["components"]
            # A bare string would silently become a set of characters.
            if comps is None:
                comps = []
            if isinstance(comps, (str, bytes)) or not isinstance(comps, (list, tuple, set, frozenset)):
                raise VariantError(
                    f"variant {name!r}: option 'components' must be a list of strings, got {type(comps).__name__}"
                )
            for c in comps:
                if not isinstance(c, str):
                    raise VariantError(f"variant {name!r}: option 'components' must contain strings, got {c!r}")
            kwargs["components"] = frozenset(comps)
        for key in ("attention", "qk", "residual", "method", "within_head"):
            if key in d:
                if not isinstance(d[key], str):
                    raise VariantError(
                        f"variant {name!r}: option {key!r} must be a string, got {type(d[key]).__name__}"
                    )
                kwargs[key] = d[key]
        if "stats_fraction" in d:
            f = d["stats_fraction"]
            if f is not None and (isinstance(f, bool) or not isinstance(f, (int, float))):
                raise VariantError(
                    f"variant {name!r}: option 'stats_fraction' must be a number, got {type(f).__name__}"
                )
            kwargs["stats_fraction"] = None if f is None else float(f)
        _validate({**_DEFAULTS, **kwargs}, name)
        return cls(**kwargs)

    @property
    def function_preserving(self) -> bool:
        # Only the flat attention LSA mixes units across heads; every other option is an exact symmetry,
        # whichever the method (the weight matcher gives Q/K and V/O one head assignment, as Algorithm 1).
        return "attn" not in self.components or matchers.ATTENTION[self.attention].function_preserving

    def without(self, *components: str) -> Variant:
        """The same options with fewer components (e.g. no pooler where the poolers share their init)."""
        return Variant(**{**self.__dict__, "components": self.components - set(components)})

    def to_dict(self) -> dict[str, Any]:
        out = {
            "components": sorted(self.components),
            "attention": self.attention,
            "qk": self.qk,
            "residual": self.residual,
            "stats_fraction": self.stats_fraction,
            "method": self.method,
        }
        # only when set: the permutation files' metadata of every other variant stays byte for byte as before
        if self.within_head != "permutation":
            out["within_head"] = self.within_head
        return out


_DEFAULTS = {
    "components": frozenset(),
    "attention": "head_perm",
    "qk": "shared",
    "residual": "all",
    "stats_fraction": None,
    "method": "activation",
    "within_head": "permutation",
}


def _validate(v: Mapping[str, Any], name: str) -> None:
    for c in sorted(v["components"]):
        if c not in COMPONENTS:
            raise VariantError(
                f"variant {name!r}: option 'components' has unknown value {c!r} "
                f"(allowed: {', '.join(sorted(COMPONENTS))})"
            )
    for key, choices in _CHOICES.items():
        value = v[key]
        if value not in choices:
            raise VariantError(
                f"variant {name!r}: option {key!r} has unknown value {value!r} (allowed: {', '.join(choices)})"
            )
    method = matchers.METHOD[v["method"]]
    for key, (value, why) in method.fixed.items():
        if v[key] != value:
            raise VariantError(
                f"variant {name!r}: option {key!r} is {v[key]!r}, but method {method.name!r} takes only {value!r}: "
                f"{why}"
            )
    if v["within_head"] != "permutation":
        if "attn" not in v["components"]:
            raise VariantError(
                f"variant {name!r}: option 'within_head' is {v['within_head']!r}, which needs the 'attn' component"
            )
        if matchers.ATTENTION[v["attention"]].candidates is None:
            raise VariantError(
                f"variant {name!r}: option 'within_head' is {v['within_head']!r}, which needs heads kept whole, "
                f"but attention {v['attention']!r} mixes them"
            )
    f = v["stats_fraction"]
    if f is None:
        return
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not (0.0 < f <= 1.0):
        raise VariantError(f"variant {name!r}: option 'stats_fraction' must satisfy 0 < f <= 1, got {f!r}")
