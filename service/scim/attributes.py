"""The attributes of RFC 7643 as typed data: one definition behind discovery and behaviour.

`/Schemas` documents, input validation, PUT mutability rules, filters and the
`attributes` / `excludedAttributes` projection all read the characteristics
below, so what the server advertises and what it does cannot drift apart.

Sources: RFC 7643 sections 4.1 (User), 4.2 (Group), 4.3 (Enterprise User) and
the schema representation of section 8.7.1. Where those disagree the prose
sections win: Group `displayName` is required (section 4.2), members carry
the `display` sub-attribute of section 2.4, read-only here because the server
fills it in, and `addresses` carries the `primary` sub-attribute of section
2.4 that the section 8.2 example uses. The common attributes
of section 3.1 (`id`, `externalId`, `meta`) are listed in the core schemas, as
section 3.1 allows, so they resolve like any other attribute.

Names are matched case-insensitively (RFC 7643 section 2.1); every lookup
returns the canonical spelling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from service.scim import schemas as urns

AttributeType = Literal[
    "string", "boolean", "decimal", "integer", "dateTime", "reference", "complex", "binary"
]
Mutability = Literal["readOnly", "readWrite", "immutable", "writeOnly"]
Returned = Literal["always", "never", "default", "request"]
Uniqueness = Literal["none", "server", "global"]


def _index(attributes: tuple[Attribute, ...]) -> dict[str, Attribute]:
    return {attribute.name.lower(): attribute for attribute in attributes}


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute and its characteristics (RFC 7643 section 2.2 defaults)."""

    name: str
    type: AttributeType
    multi_valued: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: Mutability = "readWrite"
    returned: Returned = "default"
    uniqueness: Uniqueness = "none"
    description: str = ""
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    sub_attributes: tuple[Attribute, ...] = ()
    _subs: dict[str, Attribute] = field(init=False, repr=False, compare=False)
    subs_returned_by_default: bool = field(init=False, repr=False, compare=False)
    """Whether every sub-attribute is in a default response (none `never` or `request`)."""

    def __post_init__(self) -> None:
        # Projection and filtering look names up once per attribute of every
        # resource in a page, so the lookup is a dict rather than a scan.
        object.__setattr__(self, "_subs", _index(self.sub_attributes))
        object.__setattr__(
            self,
            "subs_returned_by_default",
            all(sub.returned in ("default", "always") for sub in self.sub_attributes),
        )

    def sub(self, name: str) -> Attribute | None:
        return self._subs.get(name.lower())


@dataclass(frozen=True, slots=True)
class Schema:
    id: str
    """The schema's URN."""
    name: str
    description: str
    attributes: tuple[Attribute, ...]
    _attributes: dict[str, Attribute] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_attributes", _index(self.attributes))

    def get(self, name: str) -> Attribute | None:
        return self._attributes.get(name.lower())


@dataclass(frozen=True, slots=True)
class ResourceType:
    id: str
    name: str
    endpoint: str
    description: str
    schema: Schema
    extensions: tuple[tuple[Schema, bool], ...]
    """Each extension schema with whether resources must carry it."""

    def schemas(self) -> tuple[Schema, ...]:
        """The core schema, then the extensions."""
        return (self.schema, *(schema for schema, _ in self.extensions))

    def schema_for(self, urn: str) -> Schema | None:
        """The core or extension schema with this URN, matched case-insensitively."""
        lowered = urn.lower()
        return next((s for s in self.schemas() if s.id.lower() == lowered), None)


# --- Building blocks ---------------------------------------------------------------------------


def _string(
    name: str,
    description: str,
    *,
    mutability: Mutability = "readWrite",
    canonical_values: tuple[str, ...] = (),
) -> Attribute:
    return Attribute(
        name=name,
        type="string",
        mutability=mutability,
        description=description,
        canonical_values=canonical_values,
    )


def _display(mutability: Mutability = "readWrite") -> Attribute:
    return _string(
        "display",
        "A human-readable name, primarily used for display purposes.",
        mutability=mutability,
    )


def _primary(what: str) -> Attribute:
    return Attribute(
        name="primary",
        type="boolean",
        description=(
            f"Whether this is the primary or preferred {what}. At most one value may be primary."
        ),
    )


def _plural(
    name: str,
    description: str,
    value: Attribute,
    *,
    type_values: tuple[str, ...] = (),
    what: str,
) -> Attribute:
    """A multi-valued attribute of the usual value/display/type/primary shape (section 2.4)."""
    return Attribute(
        name=name,
        type="complex",
        multi_valued=True,
        description=description,
        sub_attributes=(
            value,
            _display(),
            _string(
                "type",
                "A label indicating the value's function.",
                canonical_values=type_values,
            ),
            _primary(what),
        ),
    )


# --- Common attributes (RFC 7643 section 3.1) -------------------------------------------------

# Not `required`: that characteristic is about what a client must send, and
# the id is always assigned by the server.
_ID = Attribute(
    name="id",
    type="string",
    case_exact=True,
    mutability="readOnly",
    returned="always",
    uniqueness="server",
    description="The service provider's unique, stable identifier of the resource.",
)

_EXTERNAL_ID = Attribute(
    name="externalId",
    type="string",
    case_exact=True,
    description="The provisioning client's own identifier of the resource.",
)

_META = Attribute(
    name="meta",
    type="complex",
    mutability="readOnly",
    description="Resource metadata, maintained by the service provider.",
    sub_attributes=(
        Attribute(
            name="resourceType",
            type="string",
            case_exact=True,
            mutability="readOnly",
            description="The name of the resource's type, e.g. 'User'.",
        ),
        Attribute(
            name="created",
            type="dateTime",
            mutability="readOnly",
            description="When the resource was added to the service provider.",
        ),
        Attribute(
            name="lastModified",
            type="dateTime",
            mutability="readOnly",
            description="When the resource was last changed.",
        ),
        Attribute(
            name="location",
            type="reference",
            case_exact=True,
            mutability="readOnly",
            reference_types=("uri",),
            description="The URI of the resource.",
        ),
        Attribute(
            name="version",
            type="string",
            case_exact=True,
            mutability="readOnly",
            description="The version of the resource, as a weak entity tag.",
        ),
    ),
)


# --- User (RFC 7643 section 4.1) ---------------------------------------------------------------

_NAME = Attribute(
    name="name",
    type="complex",
    description="The components of the User's real name.",
    sub_attributes=(
        _string(
            "formatted", "The full name, formatted for display, e.g. 'Ms. Barbara J Jensen, III'."
        ),
        _string("familyName", "The family name, or last name in most Western languages."),
        _string("givenName", "The given name, or first name in most Western languages."),
        _string("middleName", "The middle name(s)."),
        _string("honorificPrefix", "The honorific prefix(es), e.g. 'Ms.'."),
        _string("honorificSuffix", "The honorific suffix(es), e.g. 'III'."),
    ),
)

_ADDRESSES = Attribute(
    name="addresses",
    type="complex",
    multi_valued=True,
    description="Physical mailing addresses of the User.",
    sub_attributes=(
        _string("formatted", "The full mailing address, formatted for display; may hold newlines."),
        _string("streetAddress", "The street address: house number, street, P.O. box, ..."),
        _string("locality", "The city or locality."),
        _string("region", "The state or region."),
        _string("postalCode", "The zip code or postal code."),
        _string("country", "The country, as an ISO 3166-1 alpha-2 code."),
        _string(
            "type",
            "A label indicating the address's function, e.g. 'work' or 'home'.",
            canonical_values=("work", "home", "other"),
        ),
        _primary("address"),
    ),
)

_GROUPS = Attribute(
    name="groups",
    type="complex",
    multi_valued=True,
    # Membership is managed through the Group resource; here it is only reported.
    mutability="readOnly",
    description="The Groups the User belongs to, directly or through nested Groups.",
    sub_attributes=(
        _string("value", "The id of the Group.", mutability="readOnly"),
        Attribute(
            name="$ref",
            type="reference",
            mutability="readOnly",
            reference_types=("User", "Group"),
            description="The URI of the Group.",
        ),
        _display("readOnly"),
        _string(
            "type",
            "Whether the membership is direct or through a nested Group.",
            mutability="readOnly",
            canonical_values=("direct", "indirect"),
        ),
    ),
)

USER = Schema(
    id=urns.USER_SCHEMA,
    name="User",
    description="User Account",
    attributes=(
        _ID,
        _EXTERNAL_ID,
        Attribute(
            name="userName",
            type="string",
            required=True,
            uniqueness="server",
            description=(
                "The User's unique identifier at the service provider, typically used to sign in."
            ),
        ),
        _NAME,
        _string("displayName", "The User's name, suitable for display to end-users."),
        _string("nickName", "The casual way to address the User, e.g. 'Bob' for 'Robert'."),
        Attribute(
            name="profileUrl",
            type="reference",
            reference_types=("external",),
            description="A URL of a page representing the User's online profile.",
        ),
        _string("title", "The User's title, e.g. 'Vice President'."),
        _string("userType", "The User's relationship to the organization, e.g. 'Employee'."),
        _string("preferredLanguage", "The User's preferred language, e.g. 'en-US'."),
        _string("locale", "The User's default location, for localizing currency, dates, ..."),
        _string("timezone", "The User's time zone in IANA format, e.g. 'America/Los_Angeles'."),
        Attribute(
            name="active",
            type="boolean",
            description="The User's administrative status.",
        ),
        Attribute(
            name="password",
            type="string",
            mutability="writeOnly",
            returned="never",
            description="The User's cleartext password, to set or reset it.",
        ),
        _plural(
            "emails",
            "Email addresses of the User.",
            _string("value", "An email address, canonicalized, e.g. 'bjensen@example.com'."),
            type_values=("work", "home", "other"),
            what="email address",
        ),
        _plural(
            "phoneNumbers",
            "Phone numbers of the User.",
            _string("value", "A phone number, canonically in RFC 3966 form."),
            type_values=("work", "home", "mobile", "fax", "pager", "other"),
            what="phone number",
        ),
        _plural(
            "ims",
            "Instant messaging addresses of the User.",
            _string("value", "An instant messaging address."),
            type_values=("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"),
            what="messenger",
        ),
        _plural(
            "photos",
            "URLs of photos of the User.",
            Attribute(
                name="value",
                type="reference",
                reference_types=("external",),
                description="The URL of a photo of the User.",
            ),
            type_values=("photo", "thumbnail"),
            what="photo",
        ),
        _ADDRESSES,
        _GROUPS,
        _plural(
            "entitlements",
            "Entitlements of the User: things the User has.",
            _string("value", "An entitlement."),
            what="entitlement",
        ),
        _plural(
            "roles",
            "Roles of the User: who the User is, e.g. 'Student'.",
            _string("value", "A role."),
            what="role",
        ),
        _plural(
            "x509Certificates",
            "X.509 certificates issued to the User.",
            Attribute(
                name="value",
                type="binary",
                description="A DER-encoded X.509 certificate, base64-encoded.",
            ),
            what="certificate",
        ),
        _META,
    ),
)


# --- Enterprise User (RFC 7643 section 4.3) ----------------------------------------------------

ENTERPRISE_USER = Schema(
    id=urns.ENTERPRISE_USER,
    name="EnterpriseUser",
    description="Enterprise User",
    attributes=(
        _string(
            "employeeNumber",
            "An identifier assigned to the person by the organization, e.g. in order of hire.",
        ),
        _string("costCenter", "The name of a cost center."),
        _string("organization", "The name of an organization."),
        _string("division", "The name of a division."),
        _string("department", "The name of a department."),
        Attribute(
            name="manager",
            type="complex",
            description="The User's manager, as a reference to another User.",
            sub_attributes=(
                _string("value", "The id of the manager's User."),
                Attribute(
                    name="$ref",
                    type="reference",
                    reference_types=("User",),
                    description="The URI of the manager's User.",
                ),
                _string(
                    "displayName",
                    "The manager's displayName, filled in by the service provider.",
                    mutability="readOnly",
                ),
            ),
        ),
    ),
)


# --- Group (RFC 7643 section 4.2) --------------------------------------------------------------

GROUP = Schema(
    id=urns.GROUP_SCHEMA,
    name="Group",
    description="Group",
    attributes=(
        _ID,
        _EXTERNAL_ID,
        Attribute(
            name="displayName",
            type="string",
            required=True,
            description="A human-readable name for the Group.",
        ),
        Attribute(
            name="members",
            type="complex",
            multi_valued=True,
            description=(
                "The members of the Group. Members may be added or removed, but a "
                "member's sub-attributes cannot be changed."
            ),
            sub_attributes=(
                _string("value", "The id of the member.", mutability="immutable"),
                Attribute(
                    name="$ref",
                    type="reference",
                    mutability="immutable",
                    reference_types=("User", "Group"),
                    description="The URI of the member.",
                ),
                _display("readOnly"),
                _string(
                    "type",
                    "The member's resource type.",
                    mutability="immutable",
                    canonical_values=("User", "Group"),
                ),
            ),
        ),
        _META,
    ),
)


# --- Resource types (RFC 7643 section 6) -------------------------------------------------------

USER_RESOURCE = ResourceType(
    id="User",
    name="User",
    endpoint="/Users",
    description="User Account",
    schema=USER,
    extensions=((ENTERPRISE_USER, False),),
)

GROUP_RESOURCE = ResourceType(
    id="Group",
    name="Group",
    endpoint="/Groups",
    description="Group",
    schema=GROUP,
    extensions=(),
)


def resolve(
    resource_type: ResourceType, schema_urn: str | None, attr: str, sub_attr: str | None = None
) -> tuple[Schema, Attribute, Attribute | None] | None:
    """The schema, attribute and sub-attribute a name designates, or None if there is none.

    Without a URN only the core schema is searched: extension attributes must
    be qualified by their URN, as RFC 7644 section 3.10 requires.
    """
    schema = resource_type.schema if schema_urn is None else resource_type.schema_for(schema_urn)
    if schema is None:
        return None
    attribute = schema.get(attr)
    if attribute is None:
        return None
    if sub_attr is None:
        return schema, attribute, None
    sub = attribute.sub(sub_attr)
    if sub is None:
        return None
    return schema, attribute, sub


def resolve_path(
    resource_type: ResourceType, path: str
) -> tuple[Schema, Attribute, Attribute | None] | None:
    """Resolve an RFC 7644 `attrPath`: `[schema URN ":"] attribute ["." sub-attribute]`.

    The URN is recognised by prefix rather than by splitting on the last
    colon or the first dot, because URNs hold both (`...:2.0:User`).
    """
    schema_urn: str | None = None
    lowered = path.lower()
    for schema in resource_type.schemas():
        prefix = f"{schema.id.lower()}:"
        if lowered.startswith(prefix):
            schema_urn, path = schema.id, path[len(prefix) :]
            break
    if ":" in path:
        return None
    attr, dot, sub_attr = path.partition(".")
    if dot and not sub_attr:
        return None
    return resolve(resource_type, schema_urn, attr, sub_attr or None)
