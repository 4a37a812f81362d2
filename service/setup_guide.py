"""The customer-facing setup guide: connecting an IdP to one tenant, as plain text.

`{name}` in the text is the operator's product (``?product=``), which is
what the customer's admin sees as the application.

Served by `GET /admin/v1/tenants/{slug}/setup-guide?idp=...` with the
tenant's URL filled in, for operators to hand to their customers; the README
carries the same steps. The Secret Token is never part of it: it is shown
once, when issued, and the guide says where to paste it.
"""

from __future__ import annotations

from typing import Final

GUIDE_IDPS: Final = ("entra", "okta", "onelogin", "jumpcloud")

_ENTRA: Final = """\
Connecting Microsoft Entra ID to {name}
=======================================

You need: the Tenant URL below, and the Secret Token your {name} contact sent
you separately (it starts with "scimsk_").

  Tenant URL:  {url}

1. Sign in to the Microsoft Entra admin center (https://entra.microsoft.com)
   as at least an Application Administrator.
2. Go to Identity > Applications > Enterprise applications > New application
   > Create your own application. Name it (for example "{name}"), choose
   "Integrate any other application you don't find in the gallery
   (Non-gallery)", and select Create.
3. In the new application open Provisioning > Get started (or "New
   configuration") and set Provisioning Mode to Automatic.
4. Under Admin Credentials paste the Tenant URL into "Tenant URL" and the
   Secret Token into "Secret Token". Optionally append ?aadOptscim062020 to the
   Tenant URL: it switches Entra to its standards-compliant PATCH requests;
   both behaviours are supported.
5. Select Test Connection. Entra looks up a random userName and expects an
   empty result; you should see "The supplied credentials are authorized to
   enable provisioning". Select Save.
6. Open Mappings > Provision Microsoft Entra ID Users and check these
   attribute mappings (the defaults, plus externalId):
     userName                       <- userPrincipalName   (matching precedence 1)
     active                         <- Switch([IsSoftDeleted], , "False", "True", "True", "False")
     externalId                     <- objectId
     displayName                    <- displayName
     name.givenName                 <- givenName
     name.familyName                <- surname
     emails[type eq "work"].value   <- mail
     urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager <- manager
   Under Provision Microsoft Entra ID Groups: displayName <- displayName,
   externalId <- objectId, members <- members. Save.
7. Under Settings set Scope to "Sync only assigned users and groups", then
   assign the users and groups to provision under Users and groups.
8. Back in Provisioning set Provisioning Status to On and Save. The first
   (initial) cycle starts within minutes; later cycles run about every 40
   minutes. Follow them under Provisioning logs.
"""

_OKTA: Final = """\
Connecting Okta to {name}
=========================

You need: the SCIM connector base URL below, and the Secret Token your
{name} contact sent you separately (it starts with "scimsk_").

  SCIM connector base URL:  {url}

1. In the Okta Admin Console go to Applications > Applications and open your
   {name} app integration (or Create App Integration, choose SAML 2.0 or
   OIDC, and finish the sign-on setup first).
2. On the General tab, under App Settings, select Edit, set Provisioning to
   SCIM and Save. A Provisioning tab appears.
3. Provisioning > Integration > Edit:
     SCIM connector base URL:              {url}
     Unique identifier field for users:    userName
     Supported provisioning actions:       Push New Users, Push Profile Updates,
                                           Push Groups, Import New Users and
                                           Profile Updates
     Authentication Mode:                  HTTP Header
     Authorization (Bearer):               the Secret Token
4. Select Test Connector Configuration (Okta lists users with
   startIndex=1&count=2 and checks the answer), close the dialog, and Save.
5. Provisioning > To App > Edit: enable Create Users, Update User Attributes
   and Deactivate Users (Sync Password only if {name} asks for it: passwords
   are stored only as a salted hash). Save.
6. Assign people or groups on the Assignments tab. To provision groups and
   their members, add them on the Push Groups tab.
"""

_ONELOGIN: Final = """\
Connecting OneLogin to {name}
=============================

You need: the SCIM Base URL below, and the Secret Token your {name} contact
sent you separately (it starts with "scimsk_").

  SCIM Base URL:  {url}

1. In the OneLogin administration portal go to Applications > Applications >
   Add App, search for "SCIM Provisioner with SAML (SCIM v2 Enterprise)",
   select it, name it (for example "{name}") and Save.
2. On the Configuration tab:
     SCIM Base URL:        {url}
     SCIM Bearer Token:    the Secret Token
     SCIM JSON Template:   keep OneLogin's default (userName, name, emails
                           and the enterprise attributes are all understood)
   Under API Connection select Enable: OneLogin connects to {name} and shows
   the connection as enabled. Save.
3. On the Parameters tab make sure "SCIM Username" is the attribute your
   users sign in to {name} with (usually Email).
4. On the Provisioning tab check "Enable provisioning", clear the "Require
   admin approval" boxes for Create, Update and Delete unless you want to
   approve each change, and choose what a user deleted in OneLogin (or
   removed from the app) becomes: Delete or Suspend. Save.
5. Give users the app (on the Access tab through roles, or per user under
   Users > Applications). OneLogin provisions them at once; follow it under
   Users > Provisioning.
"""

_JUMPCLOUD: Final = """\
Connecting JumpCloud to {name}
==============================

You need: the Base URL below, and the Secret Token your {name} contact sent
you separately (it starts with "scimsk_").

  Base URL:  {url}

1. In the JumpCloud Admin Portal open SSO Applications and your {name}
   application, or Add New Application > Custom Application with "Export
   users to this app (Identity Management)" selected; name it (for example
   "{name}"), save it and select Configure Application.
2. On the Identity Management tab:
     SCIM Version:       SCIM 2.0
     Base URL:           {url}
     Token Key:          the Secret Token
     Test User Email:    the email address of a user in your directory
3. Select Test Connection. JumpCloud creates a test user and a test group in
   {name} and deletes them again; both requests must succeed. Then select
   Activate, and Save.
4. On the application's User Groups tab select the groups whose members
   should have {name}, and Save. JumpCloud provisions their users and pushes
   the groups with their members; later changes follow within minutes.
"""

_TROUBLESHOOTING: Final = """\
Troubleshooting
---------------
- 401 on every request (Entra: "invalid credentials"; Okta: "authentication
  failed"; OneLogin and JumpCloud: the connection test fails): the Secret
  Token is wrong, revoked or expired, or belongs to another Tenant URL. Ask
  {name} for a new token and paste it again.
- 403 "This tenant is disabled": {name} has paused provisioning for your
  organisation; contact them.
- Test Connection cannot reach the URL: the Tenant URL must be reachable over
  public HTTPS from the IdP's cloud; check for typos and a trailing space.
- 409 uniqueness on creating a user: a user with that userName already exists,
  or {name} keeps existing accounts and is set to refuse linking them. Ask
  {name} to link the account; Entra retries on its next cycle.
- A deleted user reads back as 404: that is expected. Depending on {name}'s
  policy the data is kept for a while and the account comes back, with its
  history, if the IdP creates the same user again.
- Entra removes a group member and more members disappear: not with this
  service; a remove with a member list removes exactly those members.
- Entra: users and groups are skipped as "out of scope": assign them to the
  application, or change Scope under Settings.
"""

_GUIDES: Final = {"entra": _ENTRA, "okta": _OKTA, "onelogin": _ONELOGIN, "jumpcloud": _JUMPCLOUD}


DEFAULT_PRODUCT: Final = "the application"


def render(idp: str, *, tenant_url: str, product: str = DEFAULT_PRODUCT) -> str:
    """The guide for `idp` (one of `GUIDE_IDPS`) with the tenant's URL and the product named."""
    values = {"name": product, "url": tenant_url}
    return _GUIDES[idp].format(**values) + "\n" + _TROUBLESHOOTING.format(**values)
