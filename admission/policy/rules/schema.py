"""compose-schema: its findings come from the compose source (SchemaIssue); the engine turns them into findings."""

from admission.policy.rule import register_meta

register_meta(
    "compose-schema", severity="deny", summary="The compose file is one real Docker Compose accepts.",
    applies={"compose": "violations real Compose rejects"},
    doc='''A compose file that real Docker Compose would reject, where the value can still be read.

    Why:
        `docker compose up` refuses such a file, so it never reaches production as written, and CI that
        accepts it is lying. Typical cases: an integer `user: 1001` ("services.app.user must be a string"),
        a network the service uses but the file does not define, or `network_mode` together with `networks`.
        The rules still read the value and evaluation continues, so the other findings are reported too.
        What the rules cannot read at all (services as a list, a port that does not parse) is an input error.

    Fix:
        Do what the message says, as Compose would: quote the user (`user: "1001"`), define the network under
        top-level `networks:`, or drop `networks:` when `network_mode` is set.

    Example:
        ```yaml
        user: 1001      # denied: services.app.user must be a string
        user: "1001"    # passes
        ```
    ''')
