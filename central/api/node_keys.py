"""Node key enrolment (admin): the X25519 key camera passwords are sealed to, made on the node, enrolled here.

A node announces its key in its birth message, over its own broker login. Enrolling the key an IT person (or the
Ansible edge role) read from the node itself pins it: births can no longer move it, a different announced key is
reported as a ``node.key_mismatch`` event, and with ``auth.require_enrolled_node_keys`` nothing is sealed to a key
that was not enrolled. Revoking (a stolen node) clears the key: nothing more is sealed to that node.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from central.auth import audit
from central.auth.deps import Principal, client_ip, require_role
from central.auth.roles import Role
from central.deps import SessionDep
from central.store.fleet_models import Node
from varta.contract import ID_PATTERN, utcnow
from varta.sealing import SealingError, load_public_key

router = APIRouter(prefix="/api/v1/nodes", tags=["fleet"])

NodeId = Annotated[str, Path(pattern=ID_PATTERN, description="node id")]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]


class EnrolKeyRequest(BaseModel):
    """The node's public sealing key, as `varta edge pubkey` prints it on the node."""

    model_config = ConfigDict(extra="forbid")

    public_key: str = Field(max_length=100, description="X25519 public key, base64 (32 bytes)")
    site: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="the node's site: needed only when central has not heard from the node yet",
    )

    @field_validator("public_key")
    @classmethod
    def _canonical(cls, value: str) -> str:
        try:
            key = load_public_key(value.strip())
        except (SealingError, ValueError) as exc:
            raise ValueError(f"not an X25519 public key: {exc}") from None
        return base64.b64encode(bytes(key)).decode()


class NodeKeyView(BaseModel):
    """A node's sealing key as central holds it."""

    node_id: str
    public_key: str | None = Field(description="the key camera passwords are sealed to (None: nothing can be sealed)")
    enrolled: bool = Field(description="an admin enrolled the key; births cannot replace it")
    enrolled_at: datetime | None
    enrolled_by: str | None
    revoked_at: datetime | None = Field(description="set: revoked, nothing is sealed to the node until re-enrolled")
    announced_key: str | None = Field(description="the key the node's last birth announced")
    mismatch: bool = Field(description="the node announces a key other than the enrolled one (rebuilt SD card?)")
    changed: bool = Field(default=False, description="this request changed what central holds")


def _view(node: Node, *, changed: bool = False) -> NodeKeyView:
    enrolled = node.box_key_enrolled_at is not None
    return NodeKeyView(
        node_id=node.node_id,
        public_key=node.box_public_key,
        enrolled=enrolled,
        enrolled_at=node.box_key_enrolled_at,
        enrolled_by=node.box_key_enrolled_by,
        revoked_at=node.box_key_revoked_at,
        announced_key=node.announced_box_key,
        mismatch=enrolled and node.announced_box_key is not None and node.announced_box_key != node.box_public_key,
        changed=changed,
    )


@router.get(
    "/{node_id}/box-key",
    response_model=NodeKeyView,
    summary="The node's sealing key: enrolled or announced, and whether they match",
    responses={404: {"description": "unknown node"}},
)
async def get_box_key(node_id: NodeId, session: SessionDep, _: Operator) -> NodeKeyView:
    """What central seals camera passwords to for *node_id*."""
    node = await session.get(Node, node_id)
    if node is None:
        raise HTTPException(404, f"unknown node {node_id}")
    return _view(node)


@router.put(
    "/{node_id}/box-key",
    response_model=NodeKeyView,
    summary="Enrol the node's sealing key (idempotent; `changed` tells whether anything changed)",
    responses={
        201: {"description": "enrolled for a node central had not heard from yet"},
        422: {"description": "not a public key, or a new node without its site"},
    },
)
async def enrol_box_key(
    node_id: NodeId,
    body: EnrolKeyRequest,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: Admin,
) -> NodeKeyView:
    """Pin *node_id*'s sealing key to the one read from the node; births can no longer replace it."""
    node = await session.get(Node, node_id)
    created = node is None
    if node is None:
        if body.site is None:
            raise HTTPException(422, f"central has not heard from {node_id} yet: give its site")
        node = Node(node_id=node_id, site=body.site, first_seen=utcnow(), online=False)
        session.add(node)
    elif node.box_key_enrolled_at is not None and node.box_public_key == body.public_key:
        return _view(node)  # already enrolled: nothing to do, nothing to audit
    previous = node.box_public_key
    node.box_public_key = body.public_key
    node.box_key_enrolled_at = utcnow()
    node.box_key_enrolled_by = principal.username
    node.box_key_revoked_at = None
    await audit.record(
        session,
        actor=principal.username,
        action="node.key_enrolled",
        target=node_id,
        detail={"public_key": body.public_key, "previous": previous, "new_node": created},
        ip=client_ip(request),
    )
    await session.commit()
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _view(node, changed=True)


@router.delete(
    "/{node_id}/box-key",
    response_model=NodeKeyView,
    summary="Revoke the node's sealing key (a stolen or retired node): nothing more is sealed to it",
    responses={404: {"description": "unknown node"}},
)
async def revoke_box_key(node_id: NodeId, request: Request, session: SessionDep, principal: Admin) -> NodeKeyView:
    """Forget *node_id*'s key; announcements are then only recorded until a key is enrolled again."""
    node = await session.get(Node, node_id)
    if node is None:
        raise HTTPException(404, f"unknown node {node_id}")
    if node.box_key_revoked_at is not None:
        return _view(node)
    previous = node.box_public_key
    node.box_public_key = None
    node.box_key_enrolled_at = None
    node.box_key_enrolled_by = None
    node.box_key_revoked_at = utcnow()
    await audit.record(
        session,
        actor=principal.username,
        action="node.key_revoked",
        target=node_id,
        detail={"previous": previous},
        ip=client_ip(request),
    )
    await session.commit()
    return _view(node, changed=True)
