/* SPDX-License-Identifier: Apache-2.0 */
/* An intrusive doubly linked list with a sentinel head (as the kernel's list.h). */
#ifndef KS_COMMON_LIST_H
#define KS_COMMON_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct ks_list {
	struct ks_list *prev, *next;
};

#define ks_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void ks_list_init(struct ks_list *l)
{
	l->prev = l->next = l;
}

static inline bool ks_list_empty(const struct ks_list *l)
{
	return l->next == l;
}

/* Unlinks n; a node that is on no list (next == NULL) is left alone. */
static inline void ks_list_del(struct ks_list *n)
{
	if (!n->next)
		return;
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
}

static inline void ks_list_add_after(struct ks_list *at, struct ks_list *n)
{
	n->prev = at;
	n->next = at->next;
	at->next->prev = n;
	at->next = n;
}

static inline void ks_list_add_tail(struct ks_list *head, struct ks_list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

#endif
