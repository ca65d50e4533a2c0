"""Whether a Pod carries its ServiceAccount's API token: service-account-token (issue 27)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from admission.findings import Violation
from admission.model import Workload
from admission.policy.rule import rule

KEY = "automountServiceAccountToken"


def _fix(workload: Workload, account: str) -> str:
    if workload.controller is not None:  # a controller's Pod: the exemption belongs to its top owner
        named = "kind: <its Deployment, StatefulSet, ...>, name: <its name>"
    else:
        named = f"kind: {workload.kind}, name: {workload.name or '<name>'}"
    return (f"set automountServiceAccountToken: false in the pod spec (or on ServiceAccount '{account}'); a Pod that "
            f"calls the Kubernetes API keeps its token and is exempted by name: exemptions: [{{rule: "
            f"service-account-token, {named}, reason: ...}}]")


@rule("service-account-token", severity="off", summary="Pods do not mount a ServiceAccount token they do not need.",
      applies={"kubernetes": "automountServiceAccountToken of the pod and (in the cluster) its ServiceAccount; the "
                             "kube-api-access volume"})
def service_account_token(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation]:
    """A Pod gets no API token unless it needs one.

    Why:
        Unless told otherwise, Kubernetes mounts a token of the Pod's ServiceAccount into every container (a
        projected `kube-api-access-*` volume at `/var/run/secrets/kubernetes.io/serviceaccount`). Whoever gets code
        running in any container of the Pod can call the API server with it, with every permission the account has
        been granted, now or later; most applications never call the API. Polaris checks the same
        (`automountServiceAccountToken`); kube-score and PSA do not. The rule is `off` by default, because most
        manifests would fail it, and `deny` in `policies/strict.yaml`.

        The Pod's own `automountServiceAccountToken` wins over its ServiceAccount's, as the ServiceAccount admission
        plugin decides. In the cluster that plugin has already run when the validating webhook sees a Pod: the
        `kube-api-access-*` volume it added is the evidence that the token is mounted, and a Pod without it has no
        token (`admission-cli audit` reads stored Pods the same way). Pod templates (Deployments and the other
        controllers) are checked as the Pods they make: the webhook reads their ServiceAccount (`serviceaccounts
        get`, `ADMISSION_SERVICE_ACCOUNT_READS`) and says in the finding when it could not. In CI only the pod spec
        is known: a spec that does not say `false` fails, and the finding says its ServiceAccount was not read.

        No rule can know whether a container needs the API (an operator, a controller, a CI runner does): such a
        Pod is exempted by name, with a policy exemption (`{rule: service-account-token, kind: Deployment, name:
        my-operator, reason: ...}`) or, where the policy allows annotations, `admission.policy/exempt:
        service-account-token` with `admission.policy/exempt-reason`. A hand-written projected
        `serviceAccountToken` volume with its own audience (Vault, a service mesh) is not the API token and is not
        reported.

    Fix:
        Set `automountServiceAccountToken: false` in the pod spec, or on the ServiceAccount that Pods which never
        call the API run as. A Pod that needs the API keeps its token, runs as its own ServiceAccount with only the
        permissions it uses, and is exempted by name.

    Example:
        ```yaml
        # policy: {rules: {service-account-token: deny}}
        kind: Deployment
        spec:
          template:
            spec:
              automountServiceAccountToken: false   # passes
              containers: [{name: web, image: "registry.example/web:1.4.2"}]
        ```
    """
    token = workload.token
    if token is None:
        return
    pod = token.pod
    if pod is not None and pod.value == "false":
        return
    who = f"{workload.kind} '{workload.name}'"
    account = token.account
    fix = _fix(workload, account)
    if token.volume is not None:
        said = " (it sets automountServiceAccountToken: true)" if pod is not None else ""
        yield Violation(message=f"{who} mounts the API token of ServiceAccount '{account}'{said}: the ServiceAccount admission "
                                f"plugin added volume {token.volume.value}, so every container can call the "
                                "Kubernetes API as that account", remediation=fix, origin=token.volume.origin,
                        value=token.volume.value, key=KEY)
        return
    if pod is not None:  # true
        yield Violation(message=f"{who} sets automountServiceAccountToken: true, so every container gets the API "
                                f"token of ServiceAccount '{account}'", remediation=fix, origin=pod.origin, value=pod.value, key=KEY)
        return
    if token.injected:
        return  # the plugin ran and added no token volume: the ServiceAccount (or the cluster) turned it off
    said = token.account_automount
    if said == "false":
        return
    if said is not None:
        why = ("its ServiceAccount sets automountServiceAccountToken: true" if said == "true"
               else "neither it nor its ServiceAccount sets automountServiceAccountToken: false")
        message = f"{who} mounts the API token of ServiceAccount '{account}': {why}"
    else:
        note = token.account_note or "the ServiceAccount was not read (CI cannot see the cluster)"
        message = (f"{who} does not set automountServiceAccountToken: false, so it mounts the API token of "
                   f"ServiceAccount '{account}' unless that account turns it off; {note}")
    yield Violation(message=message, remediation=fix, origin=token.origin, key=KEY)
