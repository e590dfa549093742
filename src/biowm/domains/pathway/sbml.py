"""Load any SBML file as a `PathwayModel`: its names, its parameters, refused when unusable.

Curated models (BioModels) keep most kinetic constants as reaction-local parameters, which
libroadrunner cannot change at run time. To make every kinetic constant a handle that
uncertainty and drugs can act on, local parameters are promoted to global ones before
compiling: a local id that is unique in the model keeps its name (`k7`), a clashing one
becomes `<reaction>_<id>`. Everything else in the file is left as it is.
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from biowm.core.errors import InvalidInputError

if TYPE_CHECKING:  # roadrunner is imported lazily: `biowm --help` should not pay for it
    import roadrunner

_MATHML = "http://www.w3.org/1998/Math/MathML"


@dataclass(frozen=True)
class PathwayModel:
    """A validated SBML model: the names a user may intervene on, and its (promoted) text.

    `species` are the floating species ids (observable); `rule_species` the subset set by
    assignment rules (observable, but not knockout or bolus targets). `parameters` holds
    every global parameter a run may change, with the model's value. The SBML text is what
    worker processes compile, so a model travels to them as a plain string.
    """

    name: str
    source: str
    sbml: str
    species: tuple[str, ...]
    rule_species: tuple[str, ...]
    parameters: dict[str, float]
    reactions: tuple[str, ...]
    time_unit: str
    promoted: dict[str, str] = field(default_factory=dict)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.sbml.encode()).hexdigest()

    @property
    def dynamic_species(self) -> tuple[str, ...]:
        """Species governed by reactions (not by assignment rules)."""
        return tuple(s for s in self.species if s not in self.rule_species)

    def check_species(self, names: Iterable[str], what: str = "species",
                      dynamic: bool = False) -> tuple[str, ...]:
        """`names` as a tuple, or `InvalidInputError` listing the valid ones."""
        valid = self.dynamic_species if dynamic else self.species
        return _check_names(tuple(names), valid, what, self.name)

    def check_parameters(self, names: Iterable[str], what: str = "parameter") -> tuple[str, ...]:
        return _check_names(tuple(names), tuple(self.parameters), what, self.name)

    def runner(self) -> roadrunner.RoadRunner:
        """A freshly compiled libroadrunner instance of this model."""
        return compile_sbml(self.sbml, self.source)


def load_model(source: str | os.PathLike[str]) -> PathwayModel:
    """Read an SBML file, or a shipped model by name (e.g. `kholodenko2000`), and validate it.

    Refuses, with a one-line `InvalidInputError`: an unreadable file, text that is not SBML,
    SBML that libroadrunner cannot compile, and a model without floating species.
    """
    from biowm.domains.pathway.shipped import SHIPPED_MODELS, shipped_model_path

    text_source = str(source)
    path = shipped_model_path(text_source) if text_source in SHIPPED_MODELS else Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(
            f"--sbml {source}: no such file (shipped models: {', '.join(SHIPPED_MODELS)})"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"--sbml {source}: cannot read it ({error})") from None
    return model_from_sbml(text, str(path))


def model_from_sbml(text: str, source: str = "<sbml>") -> PathwayModel:
    """Validate SBML text (see `load_model`) and describe it."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        raise InvalidInputError(f"{source}: malformed SBML (not well-formed XML: {error})") \
            from None
    if _local(root.tag) != "sbml":
        raise InvalidInputError(f"{source}: malformed SBML (root element is "
                                f"<{_local(root.tag)}>, expected <sbml>)")
    promoted = _promote_local_parameters(root)
    if promoted:
        text = ET.tostring(root, encoding="unicode")
    runner = compile_sbml(text, source)
    model = runner.model
    species = tuple(model.getFloatingSpeciesIds())
    if not species:
        raise InvalidInputError(f"{source}: the model has no floating species to simulate")
    rules = set(runner.getAssignmentRuleIds()) | set(runner.getRateRuleIds())
    parameters = {
        pid: float(value)
        for pid, value in zip(model.getGlobalParameterIds(), model.getGlobalParameterValues(),
                              strict=True)
        if pid not in rules
    }
    model_element = next((e for e in root if _local(e.tag) == "model"), None)
    name = (model_element.get("id") or model_element.get("name") or "") \
        if model_element is not None else ""
    return PathwayModel(
        name=name or Path(source).stem,
        source=source,
        sbml=text,
        species=species,
        rule_species=tuple(s for s in species if s in rules),
        parameters=parameters,
        reactions=tuple(model.getReactionIds()),
        time_unit=_time_unit(root),
        promoted=promoted,
    )


def compile_sbml(text: str, source: str = "<sbml>") -> roadrunner.RoadRunner:
    """Compile SBML text with libroadrunner; its errors become one-line refusals."""
    import roadrunner

    roadrunner.Logger.setLevel(roadrunner.Logger.LOG_CRITICAL)
    try:
        return roadrunner.RoadRunner(text)
    except Exception as error:  # libroadrunner raises bare RuntimeErrors with long reports
        first = next((line.strip() for line in str(error).splitlines() if line.strip()),
                     type(error).__name__)
        raise InvalidInputError(f"{source}: libroadrunner cannot load this SBML ({first[:200]})")\
            from None


def _check_names(names: tuple[str, ...], valid: Sequence[str], what: str,
                 model: str) -> tuple[str, ...]:
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise InvalidInputError(
            f"unknown {what} {', '.join(map(repr, unknown))} in model {model}; "
            f"valid: {', '.join(valid) if valid else '(none)'}"
        )
    if len(set(names)) != len(names):
        raise InvalidInputError(f"{what} names repeat: {', '.join(names)}")
    return names


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _promote_local_parameters(root: ET.Element) -> dict[str, str]:
    """Move reaction-local parameters into the model's global parameter list, in place.

    Returns `{global id: "reaction.local id"}`. References inside the reaction's kinetic
    law are renamed when the id has to change; the values are kept.
    """
    ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    q = (lambda name: f"{{{ns}}}{name}") if ns else (lambda name: name)
    model = root.find(q("model"))
    if model is None:
        return {}
    taken = {e.get("id") for e in model.iter() if e.get("id") and
             _local(e.tag) not in ("parameter", "localParameter")}
    taken |= {p.get("id") for p in model.findall(f"{q('listOfParameters')}/{q('parameter')}")}
    locals_by_reaction = []
    for reaction in model.iter(q("reaction")):
        law = reaction.find(q("kineticLaw"))
        if law is None:
            continue
        for list_tag, item_tag in (("listOfParameters", "parameter"),
                                   ("listOfLocalParameters", "localParameter")):
            holder = law.find(q(list_tag))
            if holder is not None:
                locals_by_reaction.append((reaction.get("id", ""), law, holder,
                                           holder.findall(q(item_tag))))
    counts: dict[str, int] = {}
    for _, _, _, items in locals_by_reaction:
        for item in items:
            counts[item.get("id", "")] = counts.get(item.get("id", ""), 0) + 1
    if not locals_by_reaction:
        return {}
    globals_list = model.find(q("listOfParameters"))
    if globals_list is None:
        globals_list = ET.Element(q("listOfParameters"))
        # SBML fixes the order of a model's lists; parameters come before the rules.
        order = ["listOfFunctionDefinitions", "listOfUnitDefinitions", "listOfCompartmentTypes",
                 "listOfSpeciesTypes", "listOfCompartments", "listOfSpecies"]
        position = max((i + 1 for i, child in enumerate(model) if _local(child.tag) in order),
                       default=0)
        model.insert(position, globals_list)
    level3 = root.get("level") == "3"
    promoted: dict[str, str] = {}
    for reaction_id, law, holder, items in locals_by_reaction:
        renames: dict[str, str] = {}
        for item in items:
            local_id = item.get("id", "")
            new_id = local_id
            if counts[local_id] > 1 or local_id in taken or new_id in promoted:
                new_id = f"{reaction_id}_{local_id}"
                suffix = 2
                while new_id in taken or new_id in promoted:
                    new_id, suffix = f"{reaction_id}_{local_id}_{suffix}", suffix + 1
                renames[local_id] = new_id
            parameter = ET.SubElement(globals_list, q("parameter"))
            for key, value in item.attrib.items():
                if key not in ("metaid", "id"):
                    parameter.set(key, value)
            parameter.set("id", new_id)
            if level3:
                parameter.set("constant", "true")
            promoted[new_id] = f"{reaction_id}.{local_id}"
        law.remove(holder)
        for ci in law.iter(f"{{{_MATHML}}}ci"):
            name = (ci.text or "").strip()
            if name in renames:
                ci.text = f" {renames[name]} "
    return promoted


def _time_unit(root: ET.Element) -> str:
    """A note on the model's time unit: the SBML declaration, or the SBML default."""
    model = next((e for e in root if _local(e.tag) == "model"), None)
    if model is None:
        return "unknown"
    declared = model.get("timeUnits")
    if declared in ("second", "minute", "hour", "day"):
        return declared
    wanted = declared or "time"
    for unit_def in model.iter():
        if _local(unit_def.tag) == "unitDefinition" and unit_def.get("id") == wanted:
            parts = []
            for unit in unit_def.iter():
                if _local(unit.tag) != "unit":
                    continue
                factor = float(unit.get("multiplier", "1")) * 10 ** int(unit.get("scale", "0"))
                prefix = "" if factor == 1 else f"{factor:g} "
                parts.append(f"{prefix}{unit.get('kind')}")
            if parts == ["60 second"]:
                return "minute"
            if parts == ["3600 second"]:
                return "hour"
            return " * ".join(parts) or wanted
    if declared:
        return declared
    return "second (SBML default; the model declares no time unit)"
