"""Register (or rotate) a notification destination that notifications.yaml names.

    WG_SLACK_WEBHOOK_URL=... python -m blocks.register_notifications slack --name wg-dbt-oncall
    WG_SENDGRID_API_KEY=... WG_EMAIL_FROM=dbt@example.com WG_EMAIL_TO=a@example.com,b@example.com \\
        python -m blocks.register_notifications email --name wg-dbt-analytics
    vault read -field=url secret/hook | python -m blocks.register_notifications webhook \\
        --name wg-dbt-hook --secret-stdin
    python -m blocks.register_notifications send-test slack-webhook/wg-dbt-oncall

Kinds (Prefect notification blocks; notifications.yaml refers to `<block type>/<name>`):
  slack    slack-webhook/<name>    a Slack incoming webhook
  email    sendgrid-email/<name>   e-mail through SendGrid's API
  webhook  custom-webhook/<name>   any HTTP endpoint (Teams, Mattermost, PagerDuty Events,
                                   an internal relay): POSTs JSON {"text", "subject", "body"}

Saving over an existing block of the same name replaces it (rotation): automations refer to
the block by id, so they keep working and use the new secret on the next message.
`send-test` sends one message through a registered block, to check the destination.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from typing import IO, Any

from blocks._cli import Save, ServerError, script_main, script_parser
from blocks._inputs import EnvInput, InputError, env_value, secret_value
from dbt_runtime.notification_rules import (
    REGISTER_SCRIPT,
    NotificationsFileError,
    load_rules,
)

_EMAIL = r"[^@\s,]+@[^@\s,]+\.[^@\s,]+"
SLACK_URL = EnvInput(
    "WG_SLACK_WEBHOOK_URL",
    "a Slack incoming-webhook URL (or --secret-stdin)",
    secret=True,
    pattern=re.compile(r"https://hooks\.slack\.com/\S+"),
    example="https://hooks.slack.com/services/T000/B000/XXXX",  # pragma: allowlist secret
)
SENDGRID_KEY = EnvInput(
    "WG_SENDGRID_API_KEY",
    "a SendGrid API key with Mail Send permission (or --secret-stdin)",
    secret=True,
    pattern=re.compile(r"SG\.[A-Za-z0-9_.-]{20,}"),
)
EMAIL_FROM = EnvInput(
    "WG_EMAIL_FROM", "the sender address, verified in SendGrid", pattern=re.compile(_EMAIL)
)
EMAIL_TO = EnvInput(
    "WG_EMAIL_TO",
    "comma-separated recipient addresses",
    pattern=re.compile(rf"{_EMAIL}(\s*,\s*{_EMAIL})*"),
    example="analytics@example.com,oncall@example.com",
)
WEBHOOK_URL = EnvInput(
    "WG_WEBHOOK_URL",
    "the http(s) URL to POST to; kept secret since such URLs usually embed a token "
    "(or --secret-stdin)",
    secret=True,
    pattern=re.compile(r"https?://\S+"),
)
WEBHOOK_TOKEN = EnvInput(
    "WG_WEBHOOK_TOKEN",
    "sent as `Authorization: Bearer <token>` when set",
    secret=True,
    required=False,
)

# kind -> (block type slug, the secret it reads, the other inputs)
KINDS: dict[str, tuple[str, EnvInput, list[EnvInput]]] = {
    "slack": ("slack-webhook", SLACK_URL, []),
    "email": ("sendgrid-email", SENDGRID_KEY, [EMAIL_FROM, EMAIL_TO]),
    "webhook": ("custom-webhook", WEBHOOK_URL, [WEBHOOK_TOKEN]),
}
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# What a custom webhook POSTs: `text` is what Slack-compatible receivers show.
WEBHOOK_JSON = {"text": "{{subject}}\n{{body}}", "subject": "{{subject}}", "body": "{{body}}"}


def build_block(kind: str, name: str, secret: str, env: Mapping[str, str]) -> Any:
    """The Prefect block for `kind`, validated, not yet saved."""
    from prefect.blocks.notifications import (
        CustomWebhookNotificationBlock,
        SendgridEmail,
        SlackWebhook,
    )

    if kind == "slack":
        return SlackWebhook(url=secret)  # type: ignore[arg-type]  # pydantic makes a SecretStr
    if kind == "email":
        sender = env_value(EMAIL_FROM, env)
        to = env_value(EMAIL_TO, env) or ""
        return SendgridEmail(
            api_key=secret,  # type: ignore[arg-type]
            sender_email=str(sender),
            to_emails=[address.strip() for address in to.split(",")],
        )
    token = env_value(WEBHOOK_TOKEN, env)
    secrets = {"url": secret} | ({"token": token} if token else {})
    return CustomWebhookNotificationBlock(
        name=name,
        url="{{url}}",  # the real URL lives in `secrets`, shown masked in the UI
        method="POST",
        json_data=dict(WEBHOOK_JSON),
        headers={"Authorization": "Bearer {{token}}"} if token else None,
        cookies=None,
        secrets=secrets,  # type: ignore[arg-type]
    )


def referenced_in_notifications(ref: str) -> list[str]:
    """Rules of notifications.yaml that send to `ref` (for the confirmation message)."""
    try:
        return [r.name for r in load_rules() if any(d.ref == ref for d in r.notify)]
    except NotificationsFileError:
        return []


def send_test_ref(ref: str | None) -> str:
    """send-test's block, `<block type>/<block name>`."""
    if not ref:
        raise InputError("send-test needs the block: <block type>/<block name>")
    if "/" not in ref:
        raise InputError(f"{ref!r}: expected <block type>/<block name>, e.g. slack-webhook/x")
    return ref


def send_test(ref: str) -> str:
    from prefect.blocks.core import Block

    block: Any = Block.load(ref)
    block.notify(
        body=f"Test message from {REGISTER_SCRIPT} for {ref}: if you read "
        "this, the dbt run notifications of notifications.yaml reach you here.",
        subject=f"dbt notifications: test of {ref}",
    )
    return f"sent a test message through {ref}"


def build_parser() -> argparse.ArgumentParser:
    parser = script_parser(
        REGISTER_SCRIPT,
        __doc__,
        {
            f"environment for `{kind}`:": [secret, *others]
            for kind, (_, secret, others) in KINDS.items()
        },
    )
    parser.add_argument(
        "kind", choices=[*KINDS, "send-test"], help="what to register, or send-test <block>"
    )
    parser.add_argument("ref", nargs="?", help="send-test: <block type>/<block name>")
    parser.add_argument("--name", help="block name (lowercase, digits, '-'), e.g. wg-dbt-oncall")
    parser.add_argument(
        "--secret-stdin", action="store_true", help="read the kind's secret from stdin"
    )
    return parser


def prepare(args: argparse.Namespace, env: Mapping[str, str], stdin: IO[str]) -> Save:
    if args.kind == "send-test":
        ref = send_test_ref(args.ref)

        def test() -> str:
            try:
                return send_test(ref)
            except Exception as exc:  # the block, the server or the destination
                raise ServerError(f"send-test {ref}: {exc}") from exc

        return test
    if not args.name or not _NAME.fullmatch(args.name):
        raise InputError(
            f"--name {args.name!r}: give the block name notifications.yaml uses "
            "(lowercase letters, digits, '-'), e.g. --name wg-dbt-oncall"
        )
    block_type, secret_spec, _ = KINDS[args.kind]
    secret = secret_value(secret_spec, env, stdin, "--secret-stdin" if args.secret_stdin else None)
    try:
        block = build_block(args.kind, args.name, secret, env)
    except InputError:
        raise
    except ValueError as exc:  # pydantic: a value the block itself rejects
        raise InputError(f"{args.kind}: {exc}") from exc
    ref = f"{block_type}/{args.name}"

    def save() -> str:
        try:
            block.save(args.name, overwrite=True)
        except Exception as exc:
            raise ServerError(f"could not save {ref}: {exc}") from exc
        rules = referenced_in_notifications(ref)
        used = (
            f"used by notifications.yaml rule(s) {', '.join(rules)}"
            if rules
            else f"not used yet: add `{ref}` to a rule's notify list in notifications.yaml"
        )
        return f"registered {ref}; {used}; then: python -m migration notifications apply"

    return save


main = script_main(build_parser, prepare)


if __name__ == "__main__":
    sys.exit(main())
