"""``GET /organization``: the caller's tenant (api-reference/v1.0/api/organization-list.md).

Graph answers a collection holding one organization, the signed-in tenant's, whose ``id`` is
the tenant id; an app-only token that carries no readable ``tid`` learns its tenant here. The
fields are the documented example's (its shape, with this tenant's id); ``$select`` is ignored
as the emulator ignores other query options.
"""

from __future__ import annotations

from provisioner.emulator.messages import JSON_TYPE, Request, Response
from provisioner.emulator.protocol import Context
from provisioner.emulator.routes import Match


def list_organization(api: Context, req: Request, m: Match) -> Response:
    tenant = api.tenant.tenant_id
    org = {
        "id": tenant,
        "deletedDateTime": None,
        "businessPhones": [],
        "city": None,
        "country": None,
        "countryLetterCode": "US",
        "createdDateTime": "2021-08-02T10:30:06Z",
        "defaultUsageLocation": None,
        "displayName": f"Emulated tenant {tenant[:8]}",
        "isMultipleDataLocationsForServicesEnabled": None,
        "marketingNotificationEmails": [],
        "onPremisesLastSyncDateTime": None,
        "onPremisesSyncEnabled": None,
        "partnerTenantType": None,
        "postalCode": None,
        "preferredLanguage": "en",
        "securityComplianceNotificationMails": [],
        "securityComplianceNotificationPhones": [],
        "state": None,
        "street": None,
        "technicalNotificationMails": [],
        "tenantType": "AAD",
        "directorySizeQuota": {"used": 0, "total": 50000},
        "assignedPlans": [],
        "privacyProfile": {"contactEmail": "", "statementUrl": ""},
        "provisionedPlans": [],
        "verifiedDomains": [
            {
                "capabilities": "Email, OfficeCommunicationsOnline",
                "isDefault": True,
                "isInitial": True,
                "name": f"{tenant[:8]}.onmicrosoft.com",
                "type": "Managed",
            }
        ],
    }
    body = {"@odata.context": f"{req.base_url}/$metadata#organization", "value": [org]}
    return Response(200, body, {"Content-Type": JSON_TYPE})
