"""The ingress's handlers of the worklist routes (``/review*``), its page (``/worklist``) and ``/whoami``.

Each worklist handler acts as the calling key (``current_principal``: its name is who claims
and who resolves), calls the Router's ``call_store`` with the ``Worklist`` method's name
(``deployments/core/store/worklist.py``) and shapes the contract's response. A resolve's
corrections are checked against the served labels here, as ``POST /feedback``'s are.
"""

from __future__ import annotations

from deployments.core import contract
from deployments.core.auth import ApiKeys
from deployments.core.pages import Page, Pages
from deployments.ingress import current_principal
from deployments.store_handlers import CaseStoreHandlers


class ReviewHandlers:
    def __init__(self, store: CaseStoreHandlers, pages: Pages, api_keys: ApiKeys):
        self.store = store
        self.pages = pages
        self.api_keys = api_keys

    async def review_list(self, params: contract.ReviewParams) -> contract.ReviewList:
        page = await self.store.call_store("review_list", queue=params.queue, status=params.status,
                                       priority=params.priority, overdue=params.overdue, cursor=params.cursor,
                                       limit=params.limit)
        return contract.ReviewList(success=True, **page)

    async def review_next(self, params: contract.ReviewNextParams) -> contract.ReviewNext:
        item = await self.store.call_store("review_claim_next", current_principal().name, queue=params.queue)
        return contract.ReviewNext(success=True, item=item)

    async def review_case(self, params: contract.ReviewCaseParams) -> contract.ReviewAction:
        return contract.ReviewAction(success=True, item=await self.store.call_store("review_case", params.case_id))

    async def review_claim(self, params: contract.ReviewCaseParams) -> contract.ReviewAction:
        item = await self.store.call_store("review_claim", params.case_id, current_principal().name)
        return contract.ReviewAction(success=True, item=item)

    async def review_release(self, params: contract.ReviewCaseParams) -> contract.ReviewAction:
        item = await self.store.call_store("review_release", params.case_id, current_principal().name)
        return contract.ReviewAction(success=True, item=item)

    async def review_resolve(self, body: contract.ResolveRequest,
                             params: contract.ReviewCaseParams) -> contract.ReviewResolved:
        corrections = contract.check_corrections(body.corrections, self.store.labels)
        done = await self.store.call_store("review_resolve", params.case_id, current_principal().name,
                                       corrections=corrections, rating=body.rating, reason=body.reason)
        return contract.ReviewResolved(success=True, **done)

    async def review_page(self) -> Page:
        return self.pages.review

    async def whoami(self) -> contract.WhoAmI:
        who = current_principal()
        return contract.WhoAmI(success=True, auth="api_key" if self.api_keys.enabled else "none", name=who.name,
                               role=who.role, permissions=sorted(who.permissions))
