"""The policy file (architecture §5): load, validate strictly, overlay on the built-in default.

Validated by hand rather than with pydantic: importing pydantic costs 60-90 ms, about half of
compose-lint's whole run, and `admission-cli check` loads a policy on every run.

KEYS is the one list of what a policy file may say. The loader refuses every key that is not in it and
checks each value by the entry's kind and choices; docs/policy.md is generated from it
(`python -m admission.cli.docs`), so the reference cannot drift from what is accepted.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import KW_ONLY, replace
from datetime import date
from functools import lru_cache
import os
from typing import Any, Literal

from admission.errors import InputError, PolicyError
from admission.findings import Severity
from admission.images.settings import ImagesSettings, VerifyEntry
from admission.keys import PublicKey, load_key
from admission.reference import registry_identity, split_docker_domain
from admission.policy import catalog
from admission.textio import read_path
from admission.yamlload import YMap, YSeq, load_documents, type_name
from admission.model import frozen

SeverityOrOff = Literal["deny", "warn", "off"]
_KEY_CAP = 64 * 1024  # a PEM public key is under 1 KiB; more is not a key file
DEFAULT_POLICY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "policies", "default.yaml")

# What a value must be. The scalar kinds are checked by `_value`; the others by the code that walks them
# (`rule`: the catalogue; `setting`: a rule's mapping or severity shorthand; `params`: the rule's Params).
Kind = Literal["choice", "bool", "string", "strings", "registries", "seconds", "platform", "date",
               "mapping", "list", "rule", "setting", "params"]


@frozen
class Stated:
    """A default that is not one value (it differs per rule); the reference prints the text."""

    text: str


UNSET: Any = Stated("–")


@frozen
class Key:
    """One key a policy file may hold."""

    path: str  # dotted; `<rule-id>` and `<registry>` stand for any such name, `[]` for every item of a list
    _: KW_ONLY
    kind: Kind
    doc: str  # one line for docs/policy.md
    default: Any = UNSET  # the built-in default's value (tests hold it to default_policy())
    choices: tuple[Any, ...] = ()  # for kind "choice", in the order messages and docs list them
    required: bool = False

    @property
    def parent(self) -> str:
        return self.path.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]


# Who creates Pods, ReplicaSets and Jobs for their owners: kube-controller-manager as one identity, or each controller
# as its own ServiceAccount (--use-service-account-credentials, as kubeadm and managed clusters run it).
CONTROLLER_IDENTITIES: tuple[str, ...] = ("system:kube-controller-manager",) + tuple(
    f"system:serviceaccount:kube-system:{name}-controller"
    for name in ("replicaset", "deployment", "job", "cronjob", "statefulset", "daemon-set", "replication"))

KEYS: tuple[Key, ...] = (
    Key("enforcement", kind="choice", choices=("deny", "warn"), default="deny",
        doc="`warn` turns every deny into a warning (roll-out mode, like PSA warn)."),
    Key("rules", kind="mapping", default=Stated("every rule at its default"),
        doc="Rule settings by rule id. Rules you name take your settings; rules you omit keep the default's."),
    Key("rules.<rule-id>", kind="setting",
        doc="One rule's settings, or just its severity (`numeric-user: off`). An unknown rule id is an error; "
            "`image-config-unavailable` takes its severity from `images.on_error`."),
    Key("rules.<rule-id>.severity", kind="choice", choices=("deny", "warn", "off"),
        default=Stated("the rule's own ([rules](rules.md))"),
        doc="`off` (or YAML `false`) disables the rule."),
    Key("rules.<rule-id>.params", kind="params",
        doc="The rule's parameters (the `rules.<rule-id>.params.*` rows). Parameters you omit keep their values; "
            "an unknown one is an error."),
    Key("exemptions", kind="list", default=(),
        doc="Exemptions, added to the default's. Every field an exemption gives must match for it to suppress a "
            "finding."),
    Key("exemptions[].rule", kind="rule", required=True, doc="A rule id, or `*` for every rule."),
    Key("exemptions[].namespace", kind="string",
        doc="Glob on the object's namespace; an exemption with a namespace never matches an object without one."),
    Key("exemptions[].name", kind="string",
        doc="Glob on the object's name. In the webhook an object a controller creates also matches by its top "
            "owner's name, once verified (`owners`): `name: api` covers Deployment api's ReplicaSets and Pods."),
    Key("exemptions[].kind", kind="string",
        doc="The object's kind, exactly; or, for an object a controller creates, its verified top owner's kind "
            "(`kind: Deployment` covers the Deployment's Pods in the webhook)."),
    Key("exemptions[].container", kind="string",
        doc="Glob on the container; omitted or `*` also matches findings without a container."),
    Key("exemptions[].reason", kind="string", required=True,
        doc="Why the exemption exists; reported as the suppressed finding's reason."),
    Key("exemptions[].expires", kind="date",
        doc="Last day (UTC, inclusive) it is honoured; after that the finding is reported, with "
            "`expired <date>` in its reason."),
    Key("exemptions[].manual_runs", kind="bool", default=Stated("`false`"),
        doc="`true` on an exemption of a CronJob: a manual run (`kubectl create job --from=cronjob/...`) whose Job "
            "is the CronJob's jobTemplate unchanged borrows it even when its requester may not patch the CronJob "
            "(without it, only such requesters' manual runs borrow). Never a Job that differs from the template."),
    Key("exemptions_from_annotations", kind="bool", default=False,
        doc="`true`: the annotations `admission.policy/exempt: \"rule,rule\"` and `admission.policy/exempt-reason` "
            "on an object (or its pod template) exempt it. Off by default, so owners cannot self-exempt; compose "
            "`x-admission` exemptions are always honoured."),
    Key("owners", kind="mapping", default=Stated("the `owners.*` rows"),
        doc="When an object's exemptions may be borrowed from its controller (a Pod from its ReplicaSet's "
            "Deployment), in the webhook."),
    Key("owners.controllers", kind="strings", default=CONTROLLER_IDENTITIES,
        doc="The request users (`userInfo.username`) trusted to create objects for their owners. Only their "
            "requests borrow the verified top owner's exemptions; a list here replaces the default."),
    Key("images", kind="mapping", default=Stated("the `images.*` rows"),
        doc="Image resolution and the registry gates."),
    Key("images.resolve", kind="choice", choices=("auto", True, False), default="auto",
        doc="`auto`: the webhook resolves image configs, the CLI only with `--resolve-images`."),
    Key("images.on_error", kind="choice", choices=("deny", "warn"), default="warn",
        doc="Severity of `image-config-unavailable` (an image config that could not be had)."),
    Key("images.platform", kind="platform", default="linux/amd64",
        doc="The platform picked from a multi-platform index."),
    Key("images.allowed_registries", kind="registries", default=(),
        doc="Registries that may be contacted even on loopback, private or link-local addresses (unlisted ones "
            "only when every address is public). `docker.io` stands for index.docker.io and registry-1.docker.io."),
    Key("images.restrict_to_allowed", kind="bool", default=False,
        doc="`true`: the reference's registry (and its mirrors) must be in `allowed_registries`; token realms and "
            "redirects get the address check only."),
    Key("images.insecure_registries", kind="registries", default=(),
        doc="Registries that may be reached over plain HTTP."),
    Key("images.mirrors", kind="mapping", default={},
        doc="Mirrors by registry, tried in order before the origin (`{docker.io: [mirror.example.com]}`)."),
    Key("images.mirrors.<registry>", kind="strings",
        doc="One registry's mirrors (host[:port]), in the order tried."),
    Key("images.tag_ttl", kind="seconds", default=300,
        doc="Seconds a tag → digest answer is trusted."),
    Key("images.resolve_user_names", kind="bool", default=False,
        doc="`true`: read /etc/passwd from the layers (top down, first hit) to name a uid in fixes; the one place "
            "layers are read."),
    Key("images.verify", kind="list", default=(),
        doc="Signature checks by image (rule `image-signature`). The first entry whose glob matches an image applies; "
            "images no entry matches are not verified. An overlay's entries come before the base's."),
    Key("images.verify[].images", kind="strings", required=True,
        doc="Globs on registry/repository, without tag or digest (`registry.example.com/team/*`; `*` also crosses "
            "`/`). Names are normalised as references are: `nginx` is `docker.io/library/nginx`."),
    Key("images.verify[].keys", kind="strings", required=True,
        doc="PEM public keys (ECDSA P-256/P-384/P-521, Ed25519, RSA ≥ 2048): files relative to the policy file, or "
            "the PEM text itself. A signature by any of them counts."),
    Key("images.verify[].signature", kind="choice", choices=("required", "warn", "off"), default=Stated("required"),
        doc="`required`: an image without a valid signature is denied; `warn`: a warning; `off`: not checked. "
            "The severity of `image-signature` for these images (it cannot be set under `rules`)."),
    Key("images.verify[].provenance", kind="choice", choices=("required", "warn", "off"), default=Stated("off"),
        doc="`required`: every runnable platform must have SLSA provenance (BuildKit's, trusted through a valid "
            "signature on the index that lists it, or a cosign attestation by one of `keys`); `warn`: a warning. The "
            "severity of `image-attestation` for these images."),
    Key("images.verify[].build_types", kind="strings", default=Stated("any"),
        doc="Allowed `buildType` URIs (list both SLSA versions' spellings: BuildKit writes "
            "`https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md` in v1 and "
            "`https://mobyproject.org/buildkit@v1` in v0.2)."),
    Key("images.verify[].builders", kind="strings", default=Stated("any"),
        doc="Allowed `builder.id` values (BuildKit leaves it empty unless the build passes `builder-id`)."),
    Key("images.verify[].sources", kind="strings", default=Stated("any"),
        doc="Globs on the source the build names: its config source URI, else the client's `vcs:source`. Both are "
            "the client's claims; with neither, a non-empty list fails."),
    Key("images.verify[].on_unavailable", kind="choice", choices=("deny", "warn"), default=Stated("deny"),
        doc="Severity when the registry was asked and gave no answer in time. Without resolution (the CLI "
            "offline) one warning says the signature was not checked, whatever this says."),
)
# Keys of keyless (Fulcio/Rekor identity) verification as Kyverno and Sigstore's policy-controller spell them: refused
# with "not supported yet" rather than "unknown key", so nobody reads the refusal as a typo to fix.
_KEYLESS = frozenset(("keyless", "identities", "identity", "issuer", "issuers", "subject", "subjects", "authorities",
                      "attestors", "certificate_identity", "certificate_oidc_issuer", "rekor", "ctlog", "fulcio"))
KEY_TABLE: dict[str, Key] = {key.path: key for key in KEYS}


def _children() -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for key in KEYS:
        out.setdefault(key.parent, set()).add(key.name)
    return {parent: frozenset(names) for parent, names in out.items()}


_CHILDREN = _children()


@frozen
class RuleSetting:
    severity: SeverityOrOff
    params: Mapping[str, Any]


@frozen
class Exemption:
    rule: str
    reason: str
    namespace: str | None = None
    name: str | None = None
    kind: str | None = None
    container: str | None = None
    expires: date | None = None
    where: str = ""  # file:line of the exemption, for reports
    manual_runs: bool = False  # a CronJob's manual runs borrow it without the requester's patch permission

    def matches(self, *, rule: str, kind: str, name: str, namespace: str | None, container: str | None) -> bool:
        if self.rule != "*" and self.rule != rule:
            return False
        return self.names(kind=kind, name=name, namespace=namespace, container=container)

    def names(self, *, kind: str, name: str, namespace: str | None, container: str | None = "*") -> bool:
        """The object (and container) fields match, whatever the rule; container "*" stands for any container."""
        if self.namespace is not None and (namespace is None or not fnmatch.fnmatchcase(namespace, self.namespace)):
            return False
        if self.name is not None and not fnmatch.fnmatchcase(name, self.name):
            return False
        if self.kind is not None and self.kind != kind:
            return False
        if self.container not in (None, "*") and container != "*" and (
                container is None or not fnmatch.fnmatchcase(container, self.container)):
            return False
        return True

    def expired(self, today: date) -> bool:
        return self.expires is not None and today > self.expires


@frozen
class Policy:
    enforcement: Severity
    rules: Mapping[str, RuleSetting]
    exemptions: tuple[Exemption, ...]
    exemptions_from_annotations: bool
    images: ImagesSettings
    source: str = "default"
    controllers: tuple[str, ...] = CONTROLLER_IDENTITIES

    @property
    def key_files(self) -> tuple[str, ...]:
        """The key files `images.verify` read: a change to one is a change to the policy (webhook reloads)."""
        return tuple(dict.fromkeys(k.path for e in self.images.verify for k in e.keys if k.path))

    def setting(self, rule_id: str) -> RuleSetting:
        return self.rules[rule_id]

    def enabled(self, rule_id: str) -> bool:
        """Whether the rule runs: it is in the policy at a severity other than `off`."""
        setting = self.rules.get(rule_id)
        return setting is not None and setting.severity != "off"


class _Reader:
    """Validation helpers that name the file, line and key of every problem."""

    def __init__(self, file: str, folder: str | None = None) -> None:
        self.file = file
        self.folder = os.path.dirname(file) if folder is None else folder  # what key files are relative to

    def fail(self, message: str, container: Any = None, key: Any = None) -> PolicyError:
        line = None
        if isinstance(container, YMap):
            line = container.key_lines.get(key, container.line) if key is not None else container.line
        elif isinstance(container, YSeq):
            line = container.line_of(key) if isinstance(key, int) else container.line
        where = f"{self.file}:{line}" if line else self.file
        return PolicyError(f"{where}: {message}")

    def mapping(self, value: Any, what: str, container: Any = None, key: Any = None) -> YMap:
        if value is None:
            return YMap()
        if not isinstance(value, dict):
            raise self.fail(f"{what} must be a mapping, not {type_name(value)}", container, key)
        return value if isinstance(value, YMap) else _ymap(value)

    def keys(self, value: YMap, parent: str, what: str) -> None:
        """Refuse every key of `value` that KEYS does not list under `parent` ("" for the top level)."""
        allowed = _CHILDREN[parent]
        for key in value:
            if key not in allowed:
                raise self.fail(f"unknown key {key!r} in {what} (allowed: {', '.join(sorted(allowed))})", value, key)

    def boolean(self, value: Any, what: str, container: Any, key: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"{what} must be true or false, not {value!r}", container, key)
        return value

    def strings(self, value: Any, what: str, container: Any, key: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{what} must be a list of strings", container, key)
        return tuple(value)


def _ymap(value: Mapping[str, Any]) -> YMap:
    out = YMap()
    out.update(value)
    return out


def choice_text(choices: tuple[Any, ...]) -> str:
    """`deny, warn or off`, with YAML's spelling of booleans."""
    words = [str(c).lower() if isinstance(c, bool) else str(c) for c in choices]
    return f"{', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else words[0]


def _value(reader: _Reader, spec: Key, value: Any, *, what: str, container: Any, key: Any) -> Any:
    """`value` checked against the scalar kind of `spec`, as the loader keeps it."""
    kind = spec.kind
    if kind == "choice":
        # `is`/type-equal, not `in`: YAML 1 == true in Python, and `resolve: 1` is not `resolve: true`.
        if any(value is c or (type(value) is type(c) and value == c) for c in spec.choices):
            return value
        raise reader.fail(f"{what} must be {choice_text(spec.choices)}, not {value!r}", container, key)
    if kind == "bool":
        return reader.boolean(value, what, container, key)
    if kind == "string":
        if not isinstance(value, str):
            raise reader.fail(f"{what} must be a string", container, key)
        return value
    if kind == "strings":
        return reader.strings(value, what, container, key)
    if kind == "registries":
        return tuple(registry_identity(s) for s in reader.strings(value, what, container, key))
    if kind == "seconds":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise reader.fail(f"{what} must be a whole number of seconds", container, key)
        return value
    if kind == "platform":
        if not isinstance(value, str) or "/" not in value:
            raise reader.fail(f"{what} must look like os/arch, e.g. linux/amd64", container, key)
        return value
    if kind == "date":
        parsed = parse_date(value)
        if not parsed:
            raise reader.fail(f"{what} must be a date YYYY-MM-DD, not {value!r}", container, key)
        return parsed
    if kind == "mapping":
        return reader.mapping(value, what, container, key)
    raise AssertionError(f"policy key {spec.path}: kind {kind!r} is checked where it is walked, not by _value")


def _severity(reader: _Reader, value: Any, container: Any, key: Any, *, path: str, what: str) -> SeverityOrOff:
    spec = KEY_TABLE[path]
    if value is False and "off" in spec.choices:  # YAML `false` reads as off wherever off is allowed
        return "off"
    return _value(reader, spec, value, what=what, container=container, key=key)  # type: ignore[no-any-return]


def _params(reader: _Reader, rule: catalog.Rule, value: Any, container: Any, key: Any) -> dict[str, Any]:
    raw = reader.mapping(value, f"rules.{rule.id}.params", container, key)
    known = {p.name: p for p in rule.params}
    out: dict[str, Any] = {}
    for name, item in raw.items():
        param = known.get(name)
        if param is None:
            allowed = ", ".join(sorted(known)) or "none"
            raise reader.fail(f"unknown parameter {name!r} for rule {rule.id} (parameters: {allowed})", raw, name)
        what = f"rules.{rule.id}.params.{name}"
        if param.kind is bool:
            out[name] = reader.boolean(item, what, raw, name)
        elif param.kind is list:
            if not isinstance(item, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in item):
                raise reader.fail(f"{what} must be a list", raw, name)
            if param.check is not None:
                for index, element in enumerate(item):
                    complaint = param.check(element)
                    if complaint:
                        raise reader.fail(f"{what}[{index}]: {complaint}", raw, name)
            out[name] = tuple(item)
        else:
            if not isinstance(item, param.kind) or isinstance(item, bool):
                raise reader.fail(f"{what} must be {param.kind.__name__}", raw, name)
            complaint = param.check(item) if param.check is not None else None
            if complaint:
                raise reader.fail(f"{what}: {complaint}", raw, name)
            out[name] = item
    return out


def _exemption(reader: _Reader, items: YSeq, index: int) -> Exemption:
    item = reader.mapping(items[index], f"exemptions[{index}]", items, index)
    reader.keys(item, "exemptions[]", f"exemptions[{index}]")
    rule = item.get("rule")
    if not isinstance(rule, str) or not rule:
        raise reader.fail(f"exemptions[{index}].rule is required (a rule id or \"*\")", item, "rule")
    if rule != "*" and rule not in catalog.all_rules():
        raise reader.fail(f"exemptions[{index}].rule: unknown rule {rule!r}", item, "rule")
    reason = item.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise reader.fail(f"exemptions[{index}].reason is required", item, "reason" if "reason" in item else None)
    optional: dict[str, Any] = {}
    for name in ("namespace", "name", "kind", "container", "expires", "manual_runs"):
        value = item.get(name)  # null is the same as leaving the field out
        if value is None:
            if name != "manual_runs":
                optional[name] = None
            continue
        optional[name] = _value(reader, KEY_TABLE[f"exemptions[].{name}"], value, what=f"exemptions[{index}].{name}",
                                container=item, key=name)
    return Exemption(rule=rule, reason=reason.strip(), where=f"{reader.file}:{items.line_of(index)}", **optional)


def parse_date(value: Any) -> date | None | Literal[False]:
    """None when absent, False when invalid."""
    if value is None:
        return None
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return False
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return False


def _images(reader: _Reader, value: Any, base: ImagesSettings, container: Any) -> ImagesSettings:
    raw = reader.mapping(value, "images", container, "images")
    reader.keys(raw, "images", "images")
    changes: dict[str, Any] = {}
    for name, item in raw.items():
        what = f"images.{name}"
        if name == "verify":
            changes[name] = _verify_entries(reader, item, raw) + base.verify
            continue
        checked = _value(reader, KEY_TABLE[what], item, what=what, container=raw, key=name)
        if name == "mirrors":
            spec = KEY_TABLE["images.mirrors.<registry>"]
            checked = {registry_identity(host): _value(reader, spec, hosts, what=f"{what}.{host}", container=checked,
                                                       key=host)
                       for host, hosts in checked.items()}
        changes[name] = checked
    return replace(base, **changes)


def _verify_entries(reader: _Reader, value: Any, container: Any) -> tuple[VerifyEntry, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise reader.fail("images.verify must be a list of entries", container, "verify")
    items = value if isinstance(value, YSeq) else YSeq()
    if items is not value:
        items.extend(value)
    return tuple(_verify_entry(reader, items, index) for index in range(len(items)))


def _verify_entry(reader: _Reader, items: YSeq, index: int) -> VerifyEntry:
    what = f"images.verify[{index}]"
    item = reader.mapping(items[index], what, items, index)
    keyless = sorted(k for k in item if k in _KEYLESS)
    if keyless:
        raise reader.fail(f"{what}.{keyless[0]}: keyless verification (identities, issuers) is not supported yet; "
                          "verify with public keys (`keys:`)", item, keyless[0])
    reader.keys(item, "images.verify[]", what)
    for required in ("images", "keys"):
        if item.get(required) in (None, []):
            raise reader.fail(f"{what}.{required} is required (a list)", item, required if required in item else None)
    patterns = tuple(_image_glob(reader, text, what=f"{what}.images", container=item)
                     for text in _value(reader, KEY_TABLE["images.verify[].images"], item["images"],
                                        what=f"{what}.images", container=item, key="images"))
    texts = _value(reader, KEY_TABLE["images.verify[].keys"], item["keys"], what=f"{what}.keys", container=item,
                   key="keys")
    keys = tuple(_public_key(reader, text, what=f"{what}.keys[{n}]", container=item) for n, text in enumerate(texts))
    levels: dict[str, Any] = {}
    for name in ("signature", "provenance", "on_unavailable"):
        if item.get(name) is not None:
            spec = KEY_TABLE[f"images.verify[].{name}"]
            levels[name] = "off" if item[name] is False and "off" in spec.choices else _value(
                reader, spec, item[name], what=f"{what}.{name}", container=item, key=name)
    for name in ("build_types", "builders", "sources"):
        if item.get(name) is not None:
            levels[name] = _value(reader, KEY_TABLE[f"images.verify[].{name}"], item[name], what=f"{what}.{name}",
                                  container=item, key=name)
    return VerifyEntry(images=patterns, keys=keys, where=f"{reader.file}:{items.line_of(index)}", **levels)


def _image_glob(reader: _Reader, text: str, *, what: str, container: YMap) -> str:
    """A glob on registry/repository, normalised as references are (`nginx` -> `docker.io/library/nginx`)."""
    glob = text.strip()
    last = glob.rsplit("/", 1)[-1]
    if not glob or "@" in glob or ":" in last:
        raise reader.fail(f"{what}: {text!r} must be registry/repository (a glob), without a tag or digest",
                          container, "images")
    if glob.startswith("*"):
        return glob
    domain, remote = split_docker_domain(glob)
    return f"{registry_identity(domain)}/{remote}"


def _public_key(reader: _Reader, text: str, *, what: str, container: YMap) -> PublicKey:
    """A key given inline (PEM text) or as a file relative to the policy file's folder."""
    if "-----BEGIN" in text:
        pem, label, path = text.strip().encode(), f"{what} (inline)", ""
    else:
        path = text if os.path.isabs(text) else os.path.join(reader.folder, text)
        try:
            with open(path, "rb") as fh:
                pem = fh.read(_KEY_CAP + 1)
        except OSError as exc:
            raise reader.fail(f"{what}: cannot read key file {text!r}: {exc.strerror or exc}", container, "keys") \
                from None
        if len(pem) > _KEY_CAP:
            raise reader.fail(f"{what}: key file {text!r} is larger than {_KEY_CAP} bytes", container, "keys")
        label = text
    try:
        return load_key(pem, label=label, path=path)
    except ValueError as exc:
        raise reader.fail(f"{what}: {label} {exc}", container, "keys") from None


def _rules(reader: _Reader, raw_rules: YMap, base: Policy | None) -> dict[str, RuleSetting]:
    known = catalog.all_rules()
    rules: dict[str, RuleSetting] = dict(base.rules) if base else {}
    for rule_id, value in raw_rules.items():
        rule = known.get(rule_id)
        if rule is None:
            raise reader.fail(f"unknown rule {rule_id!r} (see `admission-cli rules`)", raw_rules, rule_id)
        if rule.severity_fixed:
            raise reader.fail(f"rule {rule_id!r} takes its severity from {rule.severity_from}; it cannot be set "
                              "under rules", raw_rules, rule_id)
        previous = rules.get(rule_id)
        if value is False or isinstance(value, str):  # shorthand: `numeric-user: off` / `numeric-user: deny`
            body = _ymap({"severity": _severity(reader, value, raw_rules, rule_id, path="rules.<rule-id>.severity",
                                                what=f"rules.{rule_id}")})
        else:
            body = reader.mapping(value, f"rules.{rule_id}", raw_rules, rule_id)
        reader.keys(body, "rules.<rule-id>", f"rules.{rule_id}")
        if "severity" in body:
            severity = _severity(reader, body["severity"], body, "severity", path="rules.<rule-id>.severity",
                                 what=f"rules.{rule_id}.severity")
        else:
            severity = previous.severity if previous else rule.severity
        params = dict(rule.param_defaults())
        if previous:
            params.update(previous.params)
        params.update(_params(reader, rule, body.get("params"), body, "params"))
        rules[rule_id] = RuleSetting(severity, params)
    for rule_id, rule in known.items():
        if rule_id not in rules and not rule.severity_fixed:
            if base is None:
                raise PolicyError(f"{reader.file}: the default policy does not list rule {rule_id!r}")
            rules[rule_id] = RuleSetting(rule.severity, rule.param_defaults())
    return rules


def merge_policy(overlay: Mapping[str, Any] | None, *, file: str, base: Policy | None) -> Policy:
    """Validate a policy mapping and overlay it on `base` (None: it is the base itself).

    `overlay` is a policy document already read as YAML: a YMap from yamlload keeps its lines for the errors,
    which name `file`. This is how any file that embeds a policy overlays it, so every one is checked alike.
    """
    reader = _Reader(file)
    root = reader.mapping(overlay, "the policy")
    reader.keys(root, "", "the policy")

    enforcement: Severity = base.enforcement if base else KEY_TABLE["enforcement"].default
    if "enforcement" in root:
        enforcement = _value(reader, KEY_TABLE["enforcement"], root["enforcement"], what="enforcement", container=root,
                             key="enforcement")

    rules = _rules(reader, reader.mapping(root.get("rules"), "rules", root, "rules"), base)

    raw_exemptions = root.get("exemptions")
    if raw_exemptions is not None and not isinstance(raw_exemptions, list):
        raise reader.fail("exemptions must be a list", root, "exemptions")
    exemptions = tuple(base.exemptions) if base else ()
    if raw_exemptions:
        seq = raw_exemptions if isinstance(raw_exemptions, YSeq) else YSeq()
        if not isinstance(raw_exemptions, YSeq):
            seq.extend(raw_exemptions)
        exemptions += tuple(_exemption(reader, seq, i) for i in range(len(seq)))

    annotations = KEY_TABLE["exemptions_from_annotations"]
    from_annotations: bool = base.exemptions_from_annotations if base else annotations.default
    if annotations.name in root:
        from_annotations = _value(reader, annotations, root[annotations.name], what=annotations.path, container=root,
                                  key=annotations.name)
    images = _images(reader, root.get("images"), base.images if base else ImagesSettings(), root)
    controllers = base.controllers if base else CONTROLLER_IDENTITIES
    owners = reader.mapping(root.get("owners"), "owners", root, "owners")
    reader.keys(owners, "owners", "owners")
    if "controllers" in owners:
        controllers = _value(reader, KEY_TABLE["owners.controllers"], owners["controllers"],
                             what="owners.controllers", container=owners, key="controllers")
    return Policy(enforcement=enforcement, rules=rules, exemptions=exemptions,
                  exemptions_from_annotations=from_annotations, images=images, source=file, controllers=controllers)


def parse_policy(text: str, *, file: str, base: Policy | None) -> Policy:
    """Read a policy document and overlay it on `base` (None: it is the base itself)."""
    try:
        documents = [d for d in load_documents(text, file=file, dialect="1.2", strict_keys=True) if d.value is not None]
    except InputError as exc:
        raise PolicyError(str(exc)) from None
    if len(documents) > 1:
        raise PolicyError(f"{file}: a policy file holds one YAML document, found {len(documents)}")
    if not documents and base is not None:
        # A truncated or emptied file (a 0-byte ConfigMap key) must not quietly mean "the defaults": a reload would
        # drop a stricter policy. A file that wants the defaults says so.
        raise PolicyError(f"{file}: the policy file is empty (or only comments); write {{}} to use the built-in "
                          "defaults")
    return merge_policy(documents[0].value if documents else None, file=file, base=base)


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    return parse_policy(read_path(DEFAULT_POLICY, display=DEFAULT_POLICY), file="default.yaml", base=None)


def load_policy(path: str | None, *, base: Policy | None = None) -> Policy:
    """`base` (default: the built-in policy), overlaid with `path` when given. PolicyError names the file, line and
    key. The CLI's base is the repository's `.admission.yaml` overlay, when it has one."""
    base = base or default_policy()
    if path is None:
        return base
    try:
        text = read_path(path, display=path)
    except InputError as exc:
        raise PolicyError(str(exc)) from None
    return parse_policy(text, file=path, base=base)
