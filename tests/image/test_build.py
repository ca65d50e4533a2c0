"""The image make image builds (the session's one build, tests/image/conftest.py): both platforms, each with its own
machine code and SLSA provenance that names our Dockerfile and its base; labels and times from the commit; and the
same commit giving the same platform images when every step is built again."""

from __future__ import annotations

import datetime
import re
import shutil
import struct
import time
from pathlib import Path
from typing import Any

from tests.image.conftest import BASE_PYTHON, PLATFORMS, SOURCE, Built, Made, commit_facts, make_image
from tests.image.images import Source

ELF_MACHINE = {"linux/amd64": 62, "linux/arm64": 183}  # EM_X86_64, EM_AARCH64
SITE = f"opt/venv/lib/python{BASE_PYTHON}/site-packages"
BUILDKIT_SLSA = "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"


def registry(built: Built) -> Source:
    return Source.registry(built.host, "admission")


def test_the_index_holds_both_platforms_each_with_its_provenance(built: Built) -> None:
    source = registry(built)
    assert sorted(built.platforms) == sorted(PLATFORMS)
    index = source.document(built.digest)
    attestations = [m for m in index["manifests"] if m["platform"] == {"architecture": "unknown", "os": "unknown"}]
    assert sorted(m["annotations"]["vnd.docker.reference.digest"] for m in attestations) == sorted(
        built.platforms.values())
    for platform, digest in built.platforms.items():
        statement = source.provenance(built.digest, digest)
        assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
        assert [s["digest"]["sha256"] for s in statement["subject"]] == [digest.split(":", 1)[1]]
        definition = statement["predicate"]["buildDefinition"]
        assert definition["buildType"] == BUILDKIT_SLSA
        assert definition["externalParameters"]["configSource"] == {"path": "Dockerfile"}
        assert definition["externalParameters"]["request"]["frontend"] == "dockerfile.v0"
        # mode=max: the Dockerfile's own text, and the source the build was told it came from
        metadata = statement["predicate"]["runDetails"]["metadata"]["buildkit_metadata"]
        revision, _ = commit_facts()
        assert metadata["vcs"] == {"source": SOURCE, "revision": revision}
        (base,) = definition["resolvedDependencies"]
        name, _, tag = built.base.rpartition(":")
        assert base["uri"] == f"pkg:docker/{name}@{tag}?platform={platform.replace('/', '%2F')}"
        assert base["digest"] == {"sha256": built.base_digest.split(":", 1)[1]}
        internal = definition["internalParameters"]
        assert internal["builderPlatform"] == "linux/amd64" and internal["targetPlatform"] == platform


def _exec_ops(statement: dict[str, Any]) -> list[dict[str, Any]]:
    steps = statement["predicate"]["buildDefinition"]["internalParameters"]["buildConfig"]["llbDefinition"]
    return [step["op"]["Op"]["exec"] for step in steps if "exec" in step["op"].get("Op", {})]


def test_every_step_that_runs_ran_without_a_network_on_the_build_platform(built: Built) -> None:
    """The provenance's build definition: nothing was downloaded in a RUN, and nothing ran on the target."""
    source = registry(built)
    for digest in built.platforms.values():
        statement = source.provenance(built.digest, digest)
        steps = statement["predicate"]["buildDefinition"]["internalParameters"]["buildConfig"]["llbDefinition"]
        runs = [step for step in steps if "exec" in step["op"].get("Op", {})]
        assert len(runs) == 3, [r["op"]["Op"]["exec"]["meta"]["args"][-1][:60] for r in runs]
        for step in runs:
            assert step["op"]["Op"]["exec"].get("network") == 2, step["op"]["Op"]["exec"]  # pb.NetMode_NONE
            assert step["op"]["platform"] == {"Architecture": "amd64", "OS": "linux"}


def test_each_platform_carries_its_own_machine_code_compiled_bytecode_and_no_installer(built: Built) -> None:
    source = registry(built)
    for platform, digest in built.platforms.items():
        venv = source.layers(digest)[-1]
        with source.layer_files(venv["digest"]) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            shared = sorted(n for n in members if n.startswith(SITE) and n.endswith(".so"))
            assert shared, "the venv has compiled extensions (zstandard, pydantic-core, cryptography, ...)"
            for name in shared:
                header = tar.extractfile(members[name]).read(20)  # type: ignore[union-attr]
                assert header[:4] == b"\x7fELF" and struct.unpack("<H", header[18:20])[0] == ELF_MACHINE[platform], \
                    (platform, name)
            script = tar.extractfile(members["opt/venv/bin/admission-cli"]).read()  # type: ignore[union-attr]
            assert script.startswith(b"#!/opt/venv/bin/python\n")
            assert not [n for n in members if n in ("opt/venv/bin/pip", "opt/venv/bin/pip3")
                        or n.startswith(f"{SITE}/pip/")], "the runtime venv has no installer"
            ours = [n for n in members if n.startswith(f"{SITE}/admission/") and n.endswith(".py")]
            assert ours
            tag = "cpython-" + BASE_PYTHON.replace(".", "")
            for name in ours:
                folder, _, file = name.rpartition("/")
                pyc = members[f"{folder}/__pycache__/{file[:-3]}.{tag}.pyc"]
                flags = struct.unpack("<I", tar.extractfile(pyc).read(8)[4:8])[0]  # type: ignore[union-attr]
                assert flags == 0b01, f"{name}: hash-based and unchecked, not timestamped ({flags})"


def test_labels_and_times_come_from_the_commit(built: Built) -> None:
    revision, epoch = commit_facts()
    created = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    from tools.image.build import version

    for digest in built.platforms.values():
        config = registry(built).config(digest)
        labels = config["config"]["Labels"]
        assert labels["org.opencontainers.image.revision"] == revision
        assert labels["org.opencontainers.image.created"] == created
        assert labels["org.opencontainers.image.source"] == SOURCE
        assert labels["org.opencontainers.image.version"] == version()
        assert labels["org.opencontainers.image.base.name"] == built.base
        assert config["created"] == created
        ours = [h for h in config["history"] if h.get("comment") == "buildkit.dockerfile.v0"]
        assert ours and {h["created"] for h in ours} == {created}
    assert built.metadata["source_date_epoch"] == epoch and built.metadata["revision"] == revision


# What each build's provenance records of that build alone: its id and times, the digests of its LLB (which include
# the build session's id for local sources), and its layers' digests before their timestamps were rewritten.
PER_BUILD = re.compile(r"\.runDetails\.metadata\.(?:invocationId|startedOn|finishedOn)"
                       r"|\.buildDefinition\.internalParameters\.buildConfig\.digestMapping\.sha256:[0-9a-f]{64}"
                       r"|\.runDetails\.metadata\.buildkit_metadata\.source\.infos\[\d+\]\.digestMapping\.sha256:[0-9a-f]{64}"
                       r"|\.runDetails\.metadata\.buildkit_metadata\.layers\.step\d+:\d+\[\d+\]\[\d+\]\.(?:digest|size)")


def llb(statement: dict[str, Any]) -> list[Any]:
    return statement["predicate"]["buildDefinition"]["internalParameters"]["buildConfig"]["llbDefinition"]


def differences(one: Any, two: Any, path: str = "") -> list[str]:
    """The JSON paths where two documents differ."""
    if isinstance(one, dict) and isinstance(two, dict):
        return [d for key in sorted(set(one) | set(two))
                for d in differences(one.get(key), two.get(key), f"{path}.{key}")]
    if isinstance(one, list) and isinstance(two, list) and len(one) == len(two):
        return [d for i, (a, b) in enumerate(zip(one, two)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if one == two else [path]


def ran_again(progress: str) -> bool:
    """Whether BuildKit's plain progress shows every RUN step executed, none taken from its cache."""
    runs = {m[1] for m in re.finditer(r"^#(\d+) \[[^\]]*\] RUN ", progress, re.MULTILINE)}
    cached = {m[1] for m in re.finditer(r"^#(\d+) CACHED$", progress, re.MULTILINE)}
    done = {m[1] for m in re.finditer(r"^#(\d+) DONE ", progress, re.MULTILINE)}
    return bool(runs) and not runs & cached and runs <= done


def test_the_same_sources_and_time_give_the_same_platform_images_whatever_the_cache_holds(
        built: Built, tmp_path: Path) -> None:
    """Two builds at one SOURCE_DATE_EPOCH later than every step the shared cache holds (as a new commit is): one on
    that warm cache, one by a BuildKit with an empty state (nothing cached, the base pulled again). Same platform
    manifests, hence the same configs and layers. The index differs only because each build's mode=max provenance
    records that build: its invocation id and times, its LLB digests and its layers' digests before the timestamp
    rewrite (PER_BUILD); the steps, arguments and base it names are the same."""
    epoch = int(time.time())
    time.sleep(1.1)
    made: list[Made] = []
    archives = [tmp_path / "warm.oci.tar", tmp_path / "cold.oci.tar"]
    state = tmp_path / "buildkitd-state"
    try:
        for archive, fresh in zip(archives, (None, state)):
            made.append(make_image(tmp_path / archive.stem, state=fresh, epoch=epoch, OUTPUT=str(archive),
                                   PLATFORMS=",".join(PLATFORMS), PYTHON_IMAGE=built.base,
                                   PYTHON_VERSION=BASE_PYTHON, SOURCE=SOURCE))
            assert made[-1].code == 0, made[-1].output[-6000:]
    finally:
        shutil.rmtree(state, ignore_errors=True)
    assert ran_again(made[1].output), "every RUN of the cold build ran"
    (warm, first), (cold, second) = (Source.archive(archive) for archive in archives)
    assert [m.metadata["digest"] for m in made if m.metadata] == [first, second]
    assert warm.platforms(first) == cold.platforms(second)
    assert sorted(warm.platforms(first)) == sorted(PLATFORMS) and first != second
    for digest in warm.platforms(first).values():
        one, two = warm.provenance(first, digest), cold.provenance(second, digest)
        differ = differences(one["predicate"], two["predicate"])
        assert {".runDetails.metadata.invocationId", ".runDetails.metadata.startedOn",
                ".runDetails.metadata.finishedOn"} <= set(differ)
        assert [d for d in differ if not PER_BUILD.fullmatch(d)] == []
        for part in ("externalParameters", "resolvedDependencies"):
            assert one["predicate"]["buildDefinition"][part] == two["predicate"]["buildDefinition"][part]
        assert llb(one) == llb(two), "the same build steps"
    print(f"\nreproducible at {epoch}: index {first} then {second}; platforms {warm.platforms(first)}")


def test_a_base_with_another_python_stops_the_build_saying_why(built: Built, tmp_path: Path) -> None:
    made = make_image(tmp_path, OUTPUT=str(tmp_path / "x.oci.tar"), PLATFORMS="linux/amd64", PYTHON_IMAGE=built.base,
                      PYTHON_VERSION="3.12", SOURCE=SOURCE)
    assert made.code != 0
    assert (f"make image: PYTHON_VERSION is 3.12, but the base image {built.base} runs Python {BASE_PYTHON}: the "
            "wheels were fetched for Python 3.12") in made.output
    assert not (tmp_path / "x.oci.tar").exists()
