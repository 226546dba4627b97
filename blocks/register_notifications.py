"""Register (or rotate) a notification destination that notifications.yaml names.

    WG_SLACK_WEBHOOK_URL=... python blocks/register_notifications.py slack --name wg-dbt-oncall
    WG_SENDGRID_API_KEY=... WG_EMAIL_FROM=dbt@example.com WG_EMAIL_TO=a@example.com,b@example.com \\
        python blocks/register_notifications.py email --name wg-dbt-analytics
    vault read -field=url secret/hook | python blocks/register_notifications.py webhook \\
        --name wg-dbt-hook --secret-stdin
    python blocks/register_notifications.py send-test slack-webhook/wg-dbt-oncall

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
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blocks._inputs import (
    EXIT_BAD_INPUT,
    EnvInput,
    InputError,
    env_value,
    help_text,
    read_stdin_secret,
)
from dbt_runtime.notification_rules import NotificationsFileError, load_rules

EXIT_SERVER_ERROR = 1
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


def secret_value(
    spec: EnvInput, env: Mapping[str, str], stdin: IO[str] | None, from_stdin: bool
) -> str:
    if from_stdin:
        if env.get(spec.name, "").strip():
            raise InputError(f"{spec.name} is set and --secret-stdin was given too: use one")
        assert stdin is not None
        return read_stdin_secret(stdin, spec)
    value = env_value(spec, env)
    assert value is not None  # required
    return value


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


def send_test(ref: str) -> str:
    from prefect.blocks.core import Block

    block_type, sep, name = ref.partition("/")
    if not sep:
        raise InputError(f"{ref!r}: expected <block type>/<block name>, e.g. slack-webhook/x")
    block: Any = Block.load(f"{block_type}/{name}")
    block.notify(
        body=f"Test message from blocks/register_notifications.py for {ref}: if you read "
        "this, the dbt run notifications of notifications.yaml reach you here.",
        subject=f"dbt notifications: test of {ref}",
    )
    return f"sent a test message through {ref}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python blocks/register_notifications.py",
        description=__doc__,
        epilog="\n\n".join(
            help_text(f"environment for `{kind}`:", [secret, *others])
            for kind, (_, secret, others) in KINDS.items()
        )
        + "\n\nSecrets are read only from the environment or stdin, never from arguments. "
        "Exit codes: 0 done, 1 server error, 2 bad input (nothing registered).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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


def main(
    argv: list[str] | None = None,
    env: Mapping[str, str] | None = None,
    stdin: IO[str] | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env
    if args.kind == "send-test":
        if not args.ref:
            print("error: send-test needs the block: <block type>/<block name>", file=sys.stderr)
            return EXIT_BAD_INPUT
        try:
            print(send_test(args.ref))
        except Exception as exc:
            print(f"error: send-test {args.ref}: {exc}", file=sys.stderr)
            return EXIT_SERVER_ERROR
        return 0
    try:
        if not args.name or not _NAME.fullmatch(args.name):
            raise InputError(
                f"--name {args.name!r}: give the block name notifications.yaml uses "
                "(lowercase letters, digits, '-'), e.g. --name wg-dbt-oncall"
            )
        block_type, secret_spec, _ = KINDS[args.kind]
        secret = secret_value(secret_spec, env, stdin or sys.stdin, args.secret_stdin)
        block = build_block(args.kind, args.name, secret, env)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as exc:  # pydantic: a value the block itself rejects
        print(f"error: {args.kind}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        block.save(args.name, overwrite=True)
    except Exception as exc:
        print(f"error: could not save {block_type}/{args.name}: {exc}", file=sys.stderr)
        return EXIT_SERVER_ERROR
    ref = f"{block_type}/{args.name}"
    rules = referenced_in_notifications(ref)
    used = (
        f"used by notifications.yaml rule(s) {', '.join(rules)}"
        if rules
        else f"not used yet: add `{ref}` to a rule's notify list in notifications.yaml"
    )
    print(f"registered {ref}; {used}; then: python -m migration notifications apply")
    return 0


if __name__ == "__main__":
    sys.exit(main())
