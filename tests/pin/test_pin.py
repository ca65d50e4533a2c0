"""`admission-cli pin` end to end against a real registry (Debian docker-registry on loopback), with images whose
digests `skopeo inspect --raw` confirms: what is rewritten, byte for byte; what is left and why; --check, drift,
--platform, --lock, caches, credentials, and the exit codes."""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from admission.cli.main import main
from admission.pin.run import PinOptions, pin
from admission.images.settings import ImagesSettings
from tests.images import faults as F
from tests.images.conftest import REGISTRY_PASSWORD, REGISTRY_USER
from tests.images.registry import Registry
from tests.images.tokenserver import TokenServer
from tests.pin import images, project
from tests.sources.compose_oracle import ORACLE

ROOT = Path(__file__).resolve().parents[2]
# Every repository:tag the fixture project pulls; each is its own image, so each has its own digest.
TAGS = ("pin/app:1", "pin/cache:7", "pin/cache:8", "pin/db:16", "pin/proxy:1", "pin/side:1", "pin/ext:1",
        "pin/base:1", "pin/tools:3", "pin/migrate:2", "pin/web:1", "pin/job:1")
CREDS = f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"


@dataclass(frozen=True)
class Pushed:
    layout: Path
    digests: dict[str, str]  # "host/repo:tag" -> digest, as skopeo inspect --raw hashes it
    multi: dict[str, str]  # the multi-platform index: "index", "amd64", "arm64"


@pytest.fixture(scope="module")
def pushed(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    layout = tmp_path_factory.mktemp("pin-images") / "layout"
    digests = {}
    for tag in TAGS:
        images.image(layout, tag.replace("/", "-").replace(":", "-"), release=tag)
        images.push(layout, tag.replace("/", "-").replace(":", "-"), f"{registry.host}/{tag}")
        digests[f"{registry.host}/{tag}"] = images.skopeo_digest(f"{registry.host}/{tag}")
    images.image(layout, "multi-amd64", release="multi", architecture="amd64")
    images.image(layout, "multi-arm64", release="multi", architecture="arm64")
    multi = images.index(layout, "multi", [("multi-amd64", "amd64"), ("multi-arm64", "arm64")])
    images.push(layout, "multi", f"{registry.host}/pin/multi:1")
    return Pushed(layout, digests, multi)


@pytest.fixture()
def policy(registry: Registry, tmp_path: Path) -> Path:
    """The registry gates `check --resolve-images` would need for a loopback registry: listed, plain HTTP."""
    path = tmp_path / "policy.yaml"
    path.write_text(f"images:\n  allowed_registries: ['{registry.host}']\n  insecure_registries: ['{registry.host}']\n")
    return path


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cwd: Path, *argv: str) -> tuple[int, str]:
    monkeypatch.chdir(cwd)
    code = main(["pin", *argv])
    return code, capsys.readouterr().out


def lines_with(out: str, status: str) -> list[str]:
    return [line for line in out.splitlines() if f"  {status}  " in line]


def unanswered(out: str) -> list[str]:
    """A run that got no answer lists each distinct reason once: `unresolved  N references: REASON`."""
    return [line for line in out.splitlines() if line.startswith("unresolved  ")]


def compose_repo(root: Path, text: str) -> Path:
    root.mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "compose.yaml").write_text(text)
    return root


# --- what is rewritten, and nothing else -------------------------------------------------------------------------


def test_pin_writes_each_tags_digest_as_skopeo_sees_it_and_nothing_else(capsys, monkeypatch, tmp_path, registry,
                                                                          pushed, policy) -> None:
    root = project.make(tmp_path / "repo", registry.host, crlf=True)
    before = project.files(root)
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", ".")
    assert code == 0, out
    expected = {name: [n for n in lines if (name, n) != project.MISSING]
                for name, lines in project.PINNED_LINES.items()}
    project.assert_only_references_changed(before, project.files(root), digest_of=pushed.digests, expected=expected)
    assert len(lines_with(out, "pinned")) == sum(len(v) for v in expected.values()) + 1  # pod.json: two on one line
    (missing,) = lines_with(out, "unresolved")
    assert missing.startswith("compose.yaml:31  services.missing.image  unresolved  ") and "not found" in missing
    left = {line.split("  ")[0]: line for line in lines_with(out, "left alone")}
    assert "interpolated" in left["compose.yaml:24"] and "build" in left["compose.yaml:29"]
    assert "app/Dockerfile:5" in left, "FROM ${BASE} is set by a build arg"
    assert out.splitlines()[-1].endswith("; wrote 7 files")


def test_a_second_run_changes_nothing_and_check_names_only_what_could_not_be_resolved(capsys, monkeypatch, tmp_path,
                                                                                      registry, pushed, policy) -> None:
    root = project.make(tmp_path / "repo", registry.host)
    assert run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", ".")[0] == 0
    pinned = project.files(root)
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", ".")
    assert code == 0 and project.files(root) == pinned
    assert out.splitlines()[-1].startswith("0 pinned, 17 already pinned, 1 unresolved")
    code, out = run(capsys, monkeypatch, root, "--check", ".")
    assert code == 1 and [line.split("  ")[0] for line in lines_with(out, "unpinned")] == ["compose.yaml:31"]


def test_what_was_pinned_passes_the_strict_policys_digest_requirement(capsys, monkeypatch, tmp_path, registry,
                                                                       pushed, policy) -> None:
    root = project.make(tmp_path / "repo", registry.host)
    run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", ".")
    code = main(["check", "--format", "json", "--policy", str(ROOT / "policies" / "strict.yaml"), "."])
    report = json.loads(capsys.readouterr().out)
    assert code in (1, 2)  # the fixture breaks other rules on purpose
    unpinned = {(f["file"], f["line"]) for f in report["findings"] if f["rule"] == "image-tag-pinned"}
    pinned = {(name, n) for name, lines in project.PINNED_LINES.items() for n in lines} - {project.MISSING}
    assert not unpinned & pinned, unpinned & pinned
    assert project.MISSING in unpinned, "the reference pin could not resolve is still reported"


def test_an_override_named_with_f_is_pinned_where_its_value_comes_from(capsys, monkeypatch, tmp_path, registry,
                                                                        pushed, policy) -> None:
    root = project.make(tmp_path / "repo", registry.host)
    before = project.files(root)
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", "-f", "override.yaml",
                    "compose.yaml")
    after = project.files(root)
    assert code == 0, out
    assert pushed.digests[f"{registry.host}/pin/cache:8"] in after["override.yaml"].decode()
    assert before["compose.yaml"].splitlines()[16] == after["compose.yaml"].splitlines()[16], "cache:7 is overridden"
    assert f"{registry.host}/pin/ext:1@" in after["base.yaml"].decode()  # extends
    assert f"{registry.host}/pin/side:1@" in after["included.yaml"].decode()  # include


def test_a_file_outside_the_repository_is_listed_not_written(capsys, monkeypatch, tmp_path, registry, pushed,
                                                             policy) -> None:
    outside = tmp_path / "shared" / "common.yaml"
    outside.parent.mkdir()
    outside.write_text(f"services:\n  common:\n    image: {registry.host}/pin/ext:1\n")
    root = compose_repo(tmp_path / "repo", "include:\n  - ../shared/common.yaml\nservices:\n  web:\n"
                                           f"    image: {registry.host}/pin/web:1\n")
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", "compose.yaml")
    assert code == 0
    assert outside.read_text() == f"services:\n  common:\n    image: {registry.host}/pin/ext:1\n"
    (line,) = lines_with(out, "not written")
    assert line.startswith("../shared/common.yaml:3  services.common.image  not written") and "outside" in line
    assert pushed.digests[f"{registry.host}/pin/web:1"] in (root / "compose.yaml").read_text()


# --- multi-platform images -----------------------------------------------------------------------------------


def test_the_index_digest_is_the_default_and_platform_picks_one_manifest(capsys, monkeypatch, tmp_path, registry,
                                                                         pushed, policy) -> None:
    reference = f"{registry.host}/pin/multi:1"
    assert images.skopeo_digest(reference) == pushed.multi["index"]
    index_repo = compose_repo(tmp_path / "index", f"services:\n  web:\n    image: {reference}\n")
    run(capsys, monkeypatch, index_repo, "--policy", str(policy), "--no-cache", ".")
    assert (index_repo / "compose.yaml").read_text().endswith(f"image: {reference}@{pushed.multi['index']}\n")

    arm_repo = compose_repo(tmp_path / "arm", f"services:\n  web:\n    image: {reference}\n")
    code, out = run(capsys, monkeypatch, arm_repo, "--policy", str(policy), "--no-cache", "--platform", "linux/arm64",
                    ".")
    arm = images.skopeo_platform_digest(reference, {"architecture": "arm64"})
    assert code == 0 and arm == pushed.multi["arm64"]
    assert (arm_repo / "compose.yaml").read_text().endswith(f"image: {reference}@{arm}\n")
    assert "linux/arm64 manifest, not the index" in out and "digests are linux/arm64 manifests" in out


def test_platform_on_a_single_platform_image_of_another_platform_is_unresolved(capsys, monkeypatch, tmp_path,
                                                                               registry, pushed, policy) -> None:
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {registry.host}/pin/web:1\n")
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", "--platform", "linux/arm64", ".")
    (line,) = lines_with(out, "unresolved")
    assert code == 0 and "not found" in line and "no image for linux/arm64 (it is linux/amd64)" in line
    assert "@" not in (root / "compose.yaml").read_text()


# --- --check and drift -------------------------------------------------------------------------------------------


def test_check_asks_no_registry_and_lists_every_unpinned_reference_with_file_and_line(capsys, monkeypatch, tmp_path,
                                                                                      registry, pushed) -> None:
    root = project.make(tmp_path / "repo", registry.host)
    before = project.files(root)
    mark = registry.mark()
    code, out = run(capsys, monkeypatch, root, "--check", ".")
    assert code == 1 and registry.since(mark) == [] and project.files(root) == before
    listed = {line.split("  ")[0] for line in lines_with(out, "unpinned")}
    assert listed == {f"{name}:{n}" for name, lines in project.PINNED_LINES.items() for n in lines}


def test_drift_is_reported_and_fails_the_check_only_when_asked(capsys, monkeypatch, tmp_path, registry, pushed,
                                                               policy) -> None:
    images.image(pushed.layout, "drift-v1", release="drift v1")
    images.push(pushed.layout, "drift-v1", f"{registry.host}/pin/drift:1")
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {registry.host}/pin/drift:1\n")
    run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", ".")
    images.image(pushed.layout, "drift-v2", release="drift v2")
    images.push(pushed.layout, "drift-v2", f"{registry.host}/pin/drift:1")  # an upstream push moves the tag
    moved = images.skopeo_digest(f"{registry.host}/pin/drift:1")

    mark = registry.mark()
    assert run(capsys, monkeypatch, root, "--check", ".")[0] == 0
    assert registry.since(mark) == [], "the default --check is offline, and a pinned repository passes it"
    code, out = run(capsys, monkeypatch, root, "--check", "--drift", "--policy", str(policy), "--no-cache", ".")
    (line,) = lines_with(out, "drift")
    assert code == 0 and line.startswith("compose.yaml:3  services.web.image  drift  ") and moved in line
    code, out = run(capsys, monkeypatch, root, "--check", "--fail-on-drift", "--policy", str(policy), "--no-cache", ".")
    assert code == 1 and len(lines_with(out, "drift")) == 1


def test_a_pin_to_one_platforms_manifest_is_not_drift_while_the_index_lists_it(capsys, monkeypatch, tmp_path,
                                                                              registry, pushed, policy) -> None:
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {registry.host}/pin/multi:1\n")
    run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", "--platform", "linux/arm64", ".")
    code, out = run(capsys, monkeypatch, root, "--check", "--fail-on-drift", "--policy", str(policy), "--no-cache", ".")
    assert code == 0 and lines_with(out, "drift") == [] and "1 already pinned" in out


# --- registry costs and caches -------------------------------------------------------------------------------------


def test_a_digest_costs_one_head_per_tag_and_a_warm_cache_costs_nothing(capsys, monkeypatch, tmp_path, registry,
                                                                        pushed, policy) -> None:
    cache = tmp_path / "cache"
    cold_repo = project.make(tmp_path / "cold", registry.host)
    mark = registry.mark()
    run(capsys, monkeypatch, cold_repo, "--policy", str(policy), "--cache-dir", str(cache), ".")
    sent = registry.since(mark)
    heads = sorted(path for method, path, _ in sent if method == "HEAD")
    tags = sorted({f"/v2/{t.rsplit(':', 1)[0]}/manifests/{t.rsplit(':', 1)[1]}" for t in TAGS} |
                  {"/v2/pin/missing/manifests/1"})
    assert heads == tags
    assert [(m, p) for m, p, _ in sent if m != "HEAD"] == [("GET", "/v2/")]

    warm_repo = project.make(tmp_path / "warm", registry.host)
    mark = registry.mark()
    code, _ = run(capsys, monkeypatch, warm_repo, "--policy", str(policy), "--cache-dir", str(cache), ".")
    assert code == 0
    assert [m for m, p, _ in registry.since(mark) if m == "HEAD"] == ["HEAD"], "only the unresolvable one is asked"
    assert project.files(warm_repo) == project.files(cold_repo)


# --- what cannot be resolved ---------------------------------------------------------------------------------------


def test_an_unlisted_loopback_registry_is_refused_and_the_file_left_as_it_is(capsys, monkeypatch, tmp_path, registry,
                                                                           pushed) -> None:
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {registry.host}/pin/web:1\n")
    code, out = run(capsys, monkeypatch, root, "--no-cache", ".")
    (line,) = unanswered(out)  # the run's only lookup was refused: nothing answered (exit 2)
    assert code == 2 and "1 reference: refused: " in line and "@" not in (root / "compose.yaml").read_text()


def test_basic_auth_without_credentials_is_unresolved_and_with_them_pins(capsys, monkeypatch, tmp_path,
                                                                         htpasswd_registry, pushed) -> None:
    host = htpasswd_registry.host
    images.push(pushed.layout, "pin-web-1", f"{host}/pin/web:1", creds=CREDS)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"images:\n  allowed_registries: ['{host}']\n  insecure_registries: ['{host}']\n")
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {host}/pin/web:1\n")
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", "--registry-config", str(empty),
                    ".")
    (line,) = unanswered(out)
    assert code == 2 and ": auth: " in line, "no credentials: the run got no answer"
    config = _docker_config(tmp_path, host)
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", "--registry-config", str(config),
                    ".")
    assert code == 0 and images.skopeo_digest(f"{host}/pin/web:1", creds=CREDS) in (root / "compose.yaml").read_text()


def test_token_auth_pins_with_the_registrys_own_token_server(capsys, monkeypatch, tmp_path, token_registry: Registry,
                                                             token_server: TokenServer, pushed) -> None:
    host = token_registry.host
    repo = f"{token_server.private_prefix}pin/db:16"  # the token server grants it to the user only
    images.push(pushed.layout, "pin-db-16", f"{host}/{repo}", creds=CREDS)
    realm = token_server.host
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"images:\n  allowed_registries: ['{host}', '{realm}']\n"
                      f"  insecure_registries: ['{host}', '{realm}']\n")
    root = compose_repo(tmp_path / "repo", f"services:\n  db:\n    image: {host}/{repo}\n")
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", ".")
    (line,) = unanswered(out)
    assert code == 2 and ": auth: " in line, "anonymous: the token server grants no pull, so nothing was answered"
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", "--registry-config",
                    str(_docker_config(tmp_path, host)), ".")
    assert code == 0, out
    assert images.skopeo_digest(f"{host}/{repo}", creds=CREDS) in (root / "compose.yaml").read_text()


def _docker_config(folder: Path, host: str) -> Path:
    path = folder / "config.json"
    path.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(CREDS.encode()).decode()}}}))
    return path


def test_a_registry_that_does_not_answer_is_a_timeout_and_a_run_with_no_answer_exits_2(tmp_path,
                                                                                      faults: F.Faults) -> None:
    from admission.inputs import walk as inputs

    served = F.serve_image(faults, "app", "1")
    faults.route(served.tag_path, F.hang())
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {faults.host}/app:1\n")
    settings = ImagesSettings(allowed_registries=(faults.host,), insecure_registries=(faults.host,))
    outcome = pin([str(root)], options=PinOptions(settings=settings, no_cache=True, deadline_s=1.0),
                  inputs_options=inputs.Options())
    (entry,) = outcome.entries
    assert entry.status == "unresolved" and entry.detail.split(": ")[1] == "timeout"
    assert outcome.nothing_answered and outcome.code == 2
    assert "@" not in (root / "compose.yaml").read_text()


# --- --lock ---------------------------------------------------------------------------------------------------------


def test_lock_writes_a_compose_override_that_compose_itself_merges(capsys, monkeypatch, tmp_path, registry, pushed,
                                                                   policy) -> None:
    text = (f"services:\n  web:\n    image: {registry.host}/pin/web:1\n  db:\n    image: {registry.host}/pin/db:16\n"
            f"  app:\n    build: .\n    image: {registry.host}/pin/built:dev\n")
    root = compose_repo(tmp_path / "repo", text)
    (root / "Dockerfile").write_text(f"FROM {registry.host}/pin/base:1\n")
    (root / "pod.yaml").write_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n"
                                   f"  - name: a\n    image: {registry.host}/pin/web:1\n")
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", "--lock", "lock.yaml", ".")
    assert code == 0 and (root / "compose.yaml").read_text() == text
    assert {line.split("  ")[0] for line in lines_with(out, "not locked")} == {"Dockerfile:1", "pod.yaml:7"}
    proc = subprocess.run([str(ORACLE), "-f", "compose.yaml", "-f", "lock.yaml", "config", "--format", "json"],
                          cwd=root, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    services = json.loads(proc.stdout)["services"]
    assert services["web"]["image"] == f"{registry.host}/pin/web:1@{pushed.digests[f'{registry.host}/pin/web:1']}"
    assert services["db"]["image"] == f"{registry.host}/pin/db:16@{pushed.digests[f'{registry.host}/pin/db:16']}"
    assert services["app"]["image"] == f"{registry.host}/pin/built:dev", "a build's output name is not locked"

    lock = (root / "lock.yaml").read_bytes()
    mark = registry.mark()
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", "--lock", "lock.yaml", ".")
    assert code == 0 and (root / "lock.yaml").read_bytes() == lock and registry.since(mark) == []
    assert run(capsys, monkeypatch, root, "--check", "--lock", "lock.yaml", "compose.yaml")[0] == 0
    (root / "lock.yaml").unlink()
    code, out = run(capsys, monkeypatch, root, "--check", "--lock", "lock.yaml", "compose.yaml")
    assert code == 1 and len(lines_with(out, "unpinned")) == 2


# --- exit codes -------------------------------------------------------------------------------------------------------


def test_an_unreadable_input_exits_2_and_the_other_files_are_still_pinned(capsys, monkeypatch, tmp_path, registry,
                                                                          pushed, policy) -> None:
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {registry.host}/pin/web:1\n")
    (root / "broken.yaml").write_text("apiVersion: v1\nkind: Pod\nspec: [\n")
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", "compose.yaml", "broken.yaml")
    assert code == 2 and "broken.yaml:" in out and "  error  " in out
    assert "@sha256:" in (root / "compose.yaml").read_text()


def test_stdin_is_a_usage_error(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["pin", "-"]) == 2
    assert "cannot read stdin" in capsys.readouterr().err


def test_a_file_reached_by_two_names_is_pinned_once(capsys, monkeypatch, tmp_path, registry, pushed, policy) -> None:
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {registry.host}/pin/web:1  # once\n")
    (root / "link.yaml").symlink_to("compose.yaml")
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", "compose.yaml", "link.yaml")
    digest = pushed.digests[f"{registry.host}/pin/web:1"]
    assert code == 0, out
    pinned = f"services:\n  web:\n    image: {registry.host}/pin/web:1@{digest}  # once\n"
    assert (root / "compose.yaml").read_text() == pinned
    assert (root / "link.yaml").is_symlink() and out.splitlines()[-1].endswith("; wrote 1 file")


def test_tag_lookups_share_one_connection_to_the_registry(monkeypatch, tmp_path, registry, pushed) -> None:
    """A HEAD has no body, but its connection returns to the pool only once it is read to the end: otherwise every
    tag would cost a new connection (and, over HTTPS, a TLS handshake)."""
    import socket

    from admission.inputs import walk as inputs

    connects = []
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: object) -> None:
        connects.append(address)
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    root = project.make(tmp_path / "repo", registry.host)
    settings = ImagesSettings(allowed_registries=(registry.host,), insecure_registries=(registry.host,))
    outcome = pin([str(root)], options=PinOptions(settings=settings, no_cache=True), inputs_options=inputs.Options())
    assert outcome.count("pinned") == 16
    host, port = registry.host.split(":")
    assert len([a for a in connects if a == (host, int(port))]) <= 8, "at most one per concurrent lookup"


# --- drift asks the registry; runs that got no answer ------------------------------------------------------------


def test_drift_asks_the_registry_even_when_the_pinning_run_left_a_fresh_tag_cache(capsys, monkeypatch, tmp_path,
                                                                                  registry, pushed, policy) -> None:
    """The case a CI job meets: `pin` a minute ago (its tags cached for images.tag_ttl), then a re-push of the tag."""
    cache = tmp_path / "cache"
    images.image(pushed.layout, "repush-v1", release="repush v1")
    images.push(pushed.layout, "repush-v1", f"{registry.host}/pin/repush:1")
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {registry.host}/pin/repush:1\n")
    assert run(capsys, monkeypatch, root, "--policy", str(policy), "--cache-dir", str(cache), ".")[0] == 0
    images.image(pushed.layout, "repush-v2", release="repush v2")
    images.push(pushed.layout, "repush-v2", f"{registry.host}/pin/repush:1")
    moved = images.skopeo_digest(f"{registry.host}/pin/repush:1")

    mark = registry.mark()
    code, out = run(capsys, monkeypatch, root, "--check", "--fail-on-drift", "--policy", str(policy),
                    "--cache-dir", str(cache), ".")  # no --drift: --fail-on-drift implies it
    (line,) = lines_with(out, "drift")
    assert code == 1 and moved in line
    assert [(m, p) for m, p, _ in registry.since(mark) if m == "HEAD"] == [("HEAD", "/v2/pin/repush/manifests/1")]
    code, out = run(capsys, monkeypatch, root, "--check", "--drift", "--policy", str(policy), "--cache-dir",
                    str(cache), ".")
    assert code == 0 and len(lines_with(out, "drift")) == 1, "listed, and fails only with --fail-on-drift"


def test_drift_of_a_one_platform_pin_asks_the_registry_too(capsys, monkeypatch, tmp_path, registry, pushed,
                                                           policy) -> None:
    cache = tmp_path / "cache"
    for arch in ("amd64", "arm64"):
        images.image(pushed.layout, f"plat-v1-{arch}", release="plat v1", architecture=arch)
    images.index(pushed.layout, "plat-v1", [("plat-v1-amd64", "amd64"), ("plat-v1-arm64", "arm64")])
    images.push(pushed.layout, "plat-v1", f"{registry.host}/pin/plat:1")
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {registry.host}/pin/plat:1\n")
    run(capsys, monkeypatch, root, "--policy", str(policy), "--cache-dir", str(cache), "--platform", "linux/arm64",
        ".")
    assert "@" in (root / "compose.yaml").read_text()
    for arch in ("amd64", "arm64"):
        images.image(pushed.layout, f"plat-v2-{arch}", release="plat v2", architecture=arch)
    images.index(pushed.layout, "plat-v2", [("plat-v2-amd64", "amd64"), ("plat-v2-arm64", "arm64")])
    images.push(pushed.layout, "plat-v2", f"{registry.host}/pin/plat:1")
    code, out = run(capsys, monkeypatch, root, "--check", "--fail-on-drift", "--platform", "linux/arm64", "--policy",
                    str(policy), "--cache-dir", str(cache), ".")
    assert code == 1 and len(lines_with(out, "drift")) == 1


def test_fail_on_drift_exits_2_when_the_drift_of_a_reference_could_not_be_checked(capsys, monkeypatch, tmp_path,
                                                                                   registry, pushed, policy) -> None:
    web = f"{registry.host}/pin/web:1@{pushed.digests[f'{registry.host}/pin/web:1']}"
    unreachable = f"127.0.0.1:1/pin/web:1@{pushed.digests[f'{registry.host}/pin/web:1']}"
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {web}\n  old:\n    image: {unreachable}\n")
    policy.write_text(policy.read_text().replace("]", ", '127.0.0.1:1']"))
    code, out = run(capsys, monkeypatch, root, "--check", "--drift", "--policy", str(policy), "--no-cache", ".")
    (line,) = lines_with(out, "unresolved")
    assert code == 0 and line.startswith("compose.yaml:5  services.old.image  unresolved  ") and "drift not checked" in line
    code, out = run(capsys, monkeypatch, root, "--check", "--fail-on-drift", "--policy", str(policy), "--no-cache", ".")
    assert code == 2 and out.splitlines()[-1].endswith("the drift of 1 reference could not be checked (--fail-on-drift)")


def test_a_run_whose_lookups_got_no_answer_exits_2_with_each_reason_once(capsys, monkeypatch, tmp_path, registry,
                                                                         pushed, policy) -> None:
    refused = [f"{registry.host}/pin/{name}:1" for name in ("web", "job", "side")]  # loopback, and not listed
    unreachable = "127.0.0.1:1/pin/app:1"  # listed, and nothing listens there
    services = [*refused, unreachable, "127.0.0.1:1/pin/db:16"]
    text = "services:\n" + "".join(f"  s{i}:\n    image: {image}\n" for i, image in enumerate(services))
    root = compose_repo(tmp_path / "repo", text)
    (root / "policy.yaml").write_text("images:\n  allowed_registries: ['127.0.0.1:1']\n"
                                      "  insecure_registries: ['127.0.0.1:1']\n")
    mark = registry.mark()
    code, out = run(capsys, monkeypatch, root, "--policy", "policy.yaml", "--no-cache", ".")
    assert code == 2 and (root / "compose.yaml").read_text() == text and registry.since(mark) == []
    listed = unanswered(out)
    assert lines_with(out, "unresolved") == []
    assert [line.split(": ", 1)[0] for line in listed] == ["unresolved  3 references", "unresolved  2 references"]
    assert "refused" in listed[0] and "127.0.0.1:1" in listed[1]
    assert out.splitlines()[-1] == ("0 pinned, 0 already pinned, 5 unresolved; none of the 5 lookups was answered, "
                                    "so nothing was written")

    code, out = run(capsys, monkeypatch, root, "--policy", "policy.yaml", "--no-cache", "--lock", "lock.yaml", ".")
    assert code == 2 and not (root / "lock.yaml").exists() and out.splitlines()[-1].endswith("so lock.yaml was not written")


def test_some_answered_is_exit_0_with_each_unresolved_reference_listed(capsys, monkeypatch, tmp_path, registry, pushed,
                                                                       policy) -> None:
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {registry.host}/pin/web:1\n"
                                           "  app:\n    image: 127.0.0.1:1/pin/app:1\n  db:\n    image: 127.0.0.1:1/pin/db:1\n")
    policy.write_text(policy.read_text().replace("]", ", '127.0.0.1:1']"))
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", ".")
    assert code == 0 and [line.split("  ")[0] for line in lines_with(out, "unresolved")] == ["compose.yaml:5",
                                                                                             "compose.yaml:7"]
    assert f"{registry.host}/pin/web:1@" in (root / "compose.yaml").read_text()


def test_a_run_that_needs_no_lookup_is_not_a_run_without_answers(capsys, monkeypatch, tmp_path, registry,
                                                                  pushed) -> None:
    pinned = f"{registry.host}/pin/web:1@{pushed.digests[f'{registry.host}/pin/web:1']}"
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {pinned}\n")
    mark = registry.mark()
    code, out = run(capsys, monkeypatch, root, "--no-cache", ".")  # the registry is not even allowed
    assert code == 0 and out == "0 pinned, 1 already pinned\n" and registry.since(mark) == []
    assert run(capsys, monkeypatch, root, "--check", ".")[0] == 0


def test_the_lock_names_the_compose_files_it_was_made_from(capsys, monkeypatch, tmp_path, registry, pushed,
                                                           policy) -> None:
    root = compose_repo(tmp_path / "repo", f"services:\n  web:\n    image: {registry.host}/pin/web:1\n")
    (root / "docker-compose.yml").unlink(missing_ok=True)
    (root / "compose.yaml").rename(root / "docker-compose.yml")
    (root / "docker-compose.prod.yml").write_text(f"services:\n  db:\n    image: {registry.host}/pin/db:16\n")
    code, out = run(capsys, monkeypatch, root, "--policy", str(policy), "--no-cache", "--lock", "lock.yaml",
                    "-f", "docker-compose.prod.yml", "docker-compose.yml")
    assert code == 0, out
    head = (root / "lock.yaml").read_text().splitlines()[:3]
    assert head[0] == ("# Image digests written by `admission-cli pin --lock` from docker-compose.yml, "
                       "docker-compose.prod.yml.")
    command = head[2].removeprefix("#   ")
    assert command == "docker compose -f docker-compose.yml -f docker-compose.prod.yml -f lock.yaml up"
    # The command in the comment is one Compose itself runs: its files merge, and every image is pinned.
    files = command.split()[3:-1:2]
    proc = subprocess.run([str(ORACLE), *(arg for f in files for arg in ("-f", f)), "config", "--format", "json"],
                          cwd=root, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert all("@sha256:" in s["image"] for s in json.loads(proc.stdout)["services"].values())
