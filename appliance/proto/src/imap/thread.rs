//! THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §2.2), and the `* THREAD` response.
//!
//! What it is: pure functions from per-message keys ([`ThreadMessage`]) to a forest of threads
//! ([`Thread`]), and [`render`], which writes the RFC 5256 §4 `thread-list` syntax. REFERENCES
//! follows the RFC's six steps: (1) message-id table with parent links from References (or
//! In-Reply-To) that never create a loop, the message's own container re-parented to its last
//! reference; (2) the root set; (3) dummy removal (a dummy root keeps its children only when it
//! has more than one); (4) sort by sent date at every level, a dummy taking its first child's
//! date; (5) merging roots by base subject (dummies and non-replies take precedence); (6) sort
//! children again.
//!
//! What it is not: no header parsing ([`crate::imap::sortkeys`] extracts the keys), no search.
//!
//! Invariants: never panics and never recurses (every traversal uses an explicit stack, so a
//! 100,000-message reply chain cannot overflow the stack); no loops in the result (links are
//! only made after an ancestor check); every input message appears exactly once in the output;
//! ties in sent date are broken by `order` (the message sequence number, RFC 5256 §3).

use std::collections::HashMap;

/// What threading needs of one message.
#[derive(Debug, Clone, Copy)]
pub struct ThreadMessage<'a> {
    /// The number written in the response (MSN or UID).
    pub number: u32,
    /// Position in the mailbox (MSN): the tie-breaker.
    pub order: u32,
    /// Sent date (the Date: field, else INTERNALDATE), Unix seconds.
    pub date: i64,
    /// Base subject, case-mapped (see `sortkeys::SortKeys::subject`).
    pub subject: &'a str,
    /// Whether the subject was a reply or forward.
    pub subject_is_reply: bool,
    /// Message-ID, if any.
    pub message_id: Option<&'a str>,
    /// Parent chain, oldest first.
    pub references: &'a [String],
}

/// One node of a thread: a message, or a dummy standing for a missing common parent.
#[derive(Debug, PartialEq, Eq)]
pub struct Thread {
    /// The message's number, `None` for a dummy.
    pub number: Option<u32>,
    /// Replies, in thread order.
    pub children: Vec<Thread>,
}

impl Drop for Thread {
    /// Iterative, so dropping a very deep reply chain cannot overflow the stack.
    fn drop(&mut self) {
        let mut stack = std::mem::take(&mut self.children);
        while let Some(mut t) = stack.pop() {
            stack.append(&mut t.children);
        }
    }
}

/// THREAD=ORDEREDSUBJECT: messages grouped by base subject; in each group the first message (by
/// date) is the parent of all the others; groups ordered by their first message's date.
pub fn ordered_subject(msgs: &[ThreadMessage<'_>]) -> Vec<Thread> {
    let mut idx: Vec<usize> = (0..msgs.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (&msgs[a], &msgs[b]);
        x.subject
            .cmp(y.subject)
            .then(x.date.cmp(&y.date))
            .then(x.order.cmp(&y.order))
    });
    let mut threads: Vec<(i64, u32, Thread)> = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let first = &msgs[idx[i]];
        let mut j = i + 1;
        let mut children = Vec::new();
        while j < idx.len() && msgs[idx[j]].subject == first.subject {
            children.push(Thread {
                number: Some(msgs[idx[j]].number),
                children: Vec::new(),
            });
            j += 1;
        }
        threads.push((
            first.date,
            first.order,
            Thread {
                number: Some(first.number),
                children,
            },
        ));
        i = j;
    }
    threads.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    threads.into_iter().map(|t| t.2).collect()
}

#[derive(Debug, Clone, Default)]
struct Container {
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Forest<'m, 'a> {
    msgs: &'m [ThreadMessage<'a>],
    c: Vec<Container>,
}

impl Forest<'_, '_> {
    fn new_container(&mut self, msg: Option<usize>) -> usize {
        self.c.push(Container {
            msg,
            ..Container::default()
        });
        self.c.len() - 1
    }

    /// Whether `a` is `b` or one of `b`'s ancestors.
    fn is_ancestor_or_self(&self, a: usize, b: usize) -> bool {
        let mut cur = Some(b);
        while let Some(x) = cur {
            if x == a {
                return true;
            }
            cur = self.c[x].parent;
        }
        false
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.c[child].parent.take() {
            self.c[p].children.retain(|&x| x != child);
        }
    }

    /// Links `child` under `parent` unless that would create a loop. `child` must have no parent.
    fn link(&mut self, parent: usize, child: usize) {
        // A container without children can only be its own ancestor: the walk is skipped for
        // the common case (a new message), which keeps long reply chains linear.
        let may_loop = parent == child || !self.c[child].children.is_empty();
        if may_loop && self.is_ancestor_or_self(child, parent) {
            return;
        }
        self.c[child].parent = Some(parent);
        self.c[parent].children.push(child);
    }

    /// The (date, order) a container sorts by: its message's, or a dummy's first child's.
    fn sort_key(&self, n: usize) -> (i64, u32) {
        let mut cur = n;
        loop {
            if let Some(m) = self.c[cur].msg {
                return (self.msgs[m].date, self.msgs[m].order);
            }
            match self.c[cur].children.first() {
                Some(&f) => cur = f,
                None => return (i64::MAX, u32::MAX),
            }
        }
    }

    /// The message that gives a container its subject: its own, or a dummy's first child's.
    fn subject_message(&self, n: usize) -> Option<usize> {
        let mut cur = n;
        loop {
            if let Some(m) = self.c[cur].msg {
                return Some(m);
            }
            cur = *self.c[cur].children.first()?;
        }
    }

    /// Containers reachable from `roots`, parents before children.
    fn preorder(&self, roots: &[usize]) -> Vec<usize> {
        let mut order = Vec::with_capacity(self.c.len());
        let mut stack: Vec<usize> = roots.iter().rev().copied().collect();
        while let Some(n) = stack.pop() {
            order.push(n);
            stack.extend(self.c[n].children.iter().rev().copied());
        }
        order
    }

    /// Sorts the children of every container under `roots` by date (step 4/6), bottom-up so a
    /// dummy's key is its already-sorted first child's.
    fn sort_children(&mut self, roots: &[usize]) {
        for n in self.preorder(roots).into_iter().rev() {
            let mut kids = std::mem::take(&mut self.c[n].children);
            kids.sort_by_key(|&k| self.sort_key(k));
            self.c[n].children = kids;
        }
    }

    fn to_thread(&self, root: usize) -> Thread {
        // Build bottom-up without recursion: finished subtrees are kept by container index.
        let order = self.preorder(&[root]);
        let mut done: HashMap<usize, Thread> = HashMap::with_capacity(order.len());
        for &n in order.iter().rev() {
            let children = self.c[n]
                .children
                .iter()
                .filter_map(|k| done.remove(k))
                .collect();
            let number = self.c[n].msg.map(|m| self.msgs[m].number);
            done.insert(n, Thread { number, children });
        }
        done.remove(&root).unwrap_or(Thread {
            number: None,
            children: Vec::new(),
        })
    }
}

/// The non-empty base subject giving container `n` its subject, and whether it is a reply.
fn subject_of<'a>(f: &Forest<'_, 'a>, n: usize) -> Option<(&'a str, bool)> {
    let m = f.subject_message(n)?;
    let msg = f.msgs.get(m)?;
    (!msg.subject.is_empty()).then_some((msg.subject, msg.subject_is_reply))
}

/// THREAD=REFERENCES (RFC 5256 §2.2). `msgs` must be in mailbox order (ascending `order`).
pub fn references(msgs: &[ThreadMessage<'_>]) -> Vec<Thread> {
    let mut f = Forest {
        msgs,
        c: Vec::with_capacity(msgs.len() * 2),
    };
    let mut table: HashMap<&str, usize> = HashMap::with_capacity(msgs.len() * 2);

    // Step 1.
    for (i, m) in msgs.iter().enumerate() {
        // (A) Link the references to each other, each pair parent -> child.
        let mut prev: Option<usize> = None;
        for r in m.references {
            let cur = match table.get(r.as_str()) {
                Some(&c) => c,
                None => {
                    let c = f.new_container(None);
                    table.insert(r.as_str(), c);
                    c
                }
            };
            if let Some(p) = prev
                && f.c[cur].parent.is_none()
                && p != cur
            {
                f.link(p, cur);
            }
            prev = Some(cur);
        }
        // (B) The message's own container: reuse a dummy of its id, else a fresh one (a missing
        // or duplicate Message-ID gets a unique container).
        let own = match m.message_id.and_then(|id| table.get(id).map(|&c| (id, c))) {
            Some((_, c)) if f.c[c].msg.is_none() => {
                f.c[c].msg = Some(i);
                c
            }
            Some(_) => f.new_container(Some(i)),
            None => {
                let c = f.new_container(Some(i));
                if let Some(id) = m.message_id {
                    table.insert(id, c);
                }
                c
            }
        };
        // (C) Its parent is its last reference; an earlier guess is replaced.
        f.unlink(own);
        if let Some(p) = prev
            && p != own
        {
            f.link(p, own);
        }
    }

    // Step 2: the root set.
    let roots: Vec<usize> = (0..f.c.len()).filter(|&n| f.c[n].parent.is_none()).collect();

    // Step 3: remove dummies, bottom-up.
    for n in f.preorder(&roots).into_iter().rev() {
        let kids = std::mem::take(&mut f.c[n].children);
        let mut new_kids = Vec::with_capacity(kids.len());
        for k in kids {
            if f.c[k].msg.is_some() {
                new_kids.push(k);
            } else {
                // A dummy: drop it, splicing in its (already pruned) children.
                new_kids.extend(std::mem::take(&mut f.c[k].children));
            }
        }
        for &k in &new_kids {
            f.c[k].parent = Some(n);
        }
        f.c[n].children = new_kids;
    }
    let mut top: Vec<usize> = Vec::with_capacity(roots.len());
    for r in roots {
        if f.c[r].msg.is_some() || f.c[r].children.len() > 1 {
            top.push(r);
        } else if let Some(&only) = f.c[r].children.first() {
            f.c[only].parent = None;
            f.c[r].children.clear();
            top.push(only);
        }
    }

    // Step 4: sort.
    f.sort_children(&top);
    top.sort_by_key(|&n| f.sort_key(n));

    // Step 5: group the roots by base subject.
    let mut subjects: HashMap<&str, usize> = HashMap::new();
    for &n in &top {
        let Some((subj, reply)) = subject_of(&f, n) else {
            continue;
        };
        match subjects.get(subj) {
            None => {
                subjects.insert(subj, n);
            }
            Some(&old) => {
                let old_dummy = f.c[old].msg.is_none();
                let old_reply = subject_of(&f, old).is_some_and(|(_, r)| r);
                let this_dummy = f.c[n].msg.is_none();
                if (this_dummy && !old_dummy) || (old_reply && !reply) {
                    subjects.insert(subj, n);
                }
            }
        }
    }
    let mut slot: Vec<Option<usize>> = top.iter().map(|&n| Some(n)).collect();
    let position: HashMap<usize, usize> = top.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut position = position;
    for i in 0..slot.len() {
        let Some(n) = slot[i] else { continue };
        let Some((subj, reply)) = subject_of(&f, n) else {
            continue;
        };
        let Some(&t) = subjects.get(subj) else {
            continue;
        };
        if t == n {
            continue;
        }
        let t_dummy = f.c[t].msg.is_none();
        let n_dummy = f.c[n].msg.is_none();
        let t_reply = subject_of(&f, t).is_some_and(|(_, r)| r);
        if t_dummy && n_dummy {
            let kids = std::mem::take(&mut f.c[n].children);
            for &k in &kids {
                f.c[k].parent = Some(t);
            }
            f.c[t].children.extend(kids);
            slot[i] = None;
        } else if t_dummy || (!t_reply && reply) {
            f.c[n].parent = Some(t);
            f.c[t].children.push(n);
            slot[i] = None;
        } else if n_dummy {
            // Cannot happen with the table rule above (a dummy always wins); kept total.
            if let Some(&tp) = position.get(&t) {
                slot[tp] = None;
            }
            f.c[t].parent = Some(n);
            f.c[n].children.push(t);
            subjects.insert(subj, n);
        } else {
            let d = f.new_container(None);
            f.c[d].children = vec![t, n];
            f.c[t].parent = Some(d);
            f.c[n].parent = Some(d);
            if let Some(&tp) = position.get(&t) {
                slot[tp] = Some(d);
                position.insert(d, tp);
            }
            subjects.insert(subj, d);
            slot[i] = None;
        }
    }
    let top: Vec<usize> = slot.into_iter().flatten().collect();

    // Step 6: sort the children again (merged roots and new dummies).
    f.sort_children(&top);
    top.into_iter().map(|n| f.to_thread(n)).collect()
}

/// Writes the threads as RFC 5256 `thread-list`s: `(3 6 (4 23)(44 7 96))`.
pub fn render(out: &mut Vec<u8>, threads: &[Thread]) {
    enum Step<'t> {
        Members(&'t Thread),
        Text(&'static [u8]),
    }
    let mut stack: Vec<Step<'_>> = Vec::new();
    for t in threads.iter().rev() {
        stack.push(Step::Text(b")"));
        stack.push(Step::Members(t));
        stack.push(Step::Text(b"("));
    }
    while let Some(step) = stack.pop() {
        match step {
            Step::Text(t) => out.extend_from_slice(t),
            Step::Members(t) => {
                if let Some(n) = t.number {
                    out.extend_from_slice(n.to_string().as_bytes());
                }
                match t.children.as_slice() {
                    [] => {}
                    [only] if t.number.is_some() => {
                        stack.push(Step::Members(only));
                        stack.push(Step::Text(b" "));
                    }
                    kids => {
                        for k in kids.iter().rev() {
                            stack.push(Step::Text(b")"));
                            stack.push(Step::Members(k));
                            stack.push(Step::Text(b"("));
                        }
                        if t.number.is_some() {
                            stack.push(Step::Text(b" "));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    struct M {
        id: &'static str,
        refs: Vec<String>,
        subject: &'static str,
        reply: bool,
        date: i64,
    }

    fn m(id: &'static str, refs: &[&str], subject: &'static str, reply: bool, date: i64) -> M {
        M {
            id,
            refs: refs.iter().map(|s| s.to_string()).collect(),
            subject,
            reply,
            date,
        }
    }

    fn run(ms: &[M], refs_algo: bool) -> String {
        let input: Vec<ThreadMessage<'_>> = ms
            .iter()
            .enumerate()
            .map(|(i, x)| ThreadMessage {
                number: i as u32 + 1,
                order: i as u32 + 1,
                date: x.date,
                subject: x.subject,
                subject_is_reply: x.reply,
                message_id: (!x.id.is_empty()).then_some(x.id),
                references: &x.refs,
            })
            .collect();
        let t = if refs_algo {
            references(&input)
        } else {
            ordered_subject(&input)
        };
        let mut out = Vec::new();
        render(&mut out, &t);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn render_matches_rfc5256_syntax() {
        let leaf = |n| Thread {
            number: Some(n),
            children: vec![],
        };
        let t = vec![
            leaf(2),
            Thread {
                number: Some(3),
                children: vec![Thread {
                    number: Some(6),
                    children: vec![
                        Thread {
                            number: Some(4),
                            children: vec![leaf(23)],
                        },
                        Thread {
                            number: Some(44),
                            children: vec![Thread {
                                number: Some(7),
                                children: vec![leaf(96)],
                            }],
                        },
                    ],
                }],
            },
            Thread {
                number: None,
                children: vec![leaf(8), leaf(9)],
            },
        ];
        let mut out = Vec::new();
        render(&mut out, &t);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(2)(3 6 (4 23)(44 7 96))((8)(9))"
        );
    }

    #[test]
    fn references_links_replies_and_breaks_ties_by_order() {
        let ms = [
            m("a@x", &[], "HELLO", false, 100),
            m("b@x", &["a@x"], "HELLO", true, 200),
            m("c@x", &["a@x", "b@x"], "HELLO", true, 300),
            m("d@x", &["a@x"], "HELLO", true, 250),
            m("e@x", &[], "OTHER", false, 50),
        ];
        assert_eq!(run(&ms, true), "(5)(1 (2 3)(4))");
    }

    #[test]
    fn references_missing_parent_makes_dummy_root_and_subject_merge() {
        // Two replies to a message we do not have: a dummy root with two children.
        let ms = [
            m("b@x", &["gone@x"], "TOPIC", true, 10),
            m("c@x", &["gone@x"], "TOPIC", true, 20),
            // Same subject, unrelated by references, not a reply: becomes the parent of
            // nothing but is merged: the dummy root takes it as a child.
            m("d@x", &[], "TOPIC", false, 5),
        ];
        assert_eq!(run(&ms, true), "((3)(1)(2))");
        // Two non-replies with one subject get a new dummy parent.
        let ms = [m("a@x", &[], "S", false, 1), m("b@x", &[], "S", false, 2)];
        assert_eq!(run(&ms, true), "((1)(2))");
        // A reply is made a child of the non-reply.
        let ms = [m("a@x", &[], "S", false, 1), m("b@x", &[], "S", true, 2)];
        assert_eq!(run(&ms, true), "(1 2)");
        // An empty subject never merges.
        let ms = [m("a@x", &[], "", false, 1), m("b@x", &[], "", false, 2)];
        assert_eq!(run(&ms, true), "(1)(2)");
    }

    #[test]
    fn references_survive_loops_duplicates_and_missing_ids() {
        let ms = [
            m("a@x", &["b@x"], "", false, 1),
            m("b@x", &["a@x"], "", false, 2),
            m("a@x", &[], "", false, 3),
            m("", &["a@x"], "", false, 4),
            m("self@x", &["self@x"], "", false, 5),
        ];
        let out = run(&ms, true);
        for n in 1..=5 {
            assert_eq!(
                out.matches(&format!("{n}")).count(),
                1,
                "{n} once in {out}"
            );
        }
        assert_eq!(out, "(2 1 4)(3)(5)");
    }

    #[test]
    fn long_chains_do_not_recurse() {
        let ids: Vec<String> = (0..50_000).map(|i| format!("{i}@x")).collect();
        let refs: Vec<Vec<String>> = (0..50_000)
            .map(|i| if i == 0 { vec![] } else { vec![ids[i - 1].clone()] })
            .collect();
        let input: Vec<ThreadMessage<'_>> = (0..50_000)
            .map(|i| ThreadMessage {
                number: i as u32 + 1,
                order: i as u32 + 1,
                date: i as i64,
                subject: "",
                subject_is_reply: false,
                message_id: Some(&ids[i]),
                references: &refs[i],
            })
            .collect();
        let t = references(&input);
        assert_eq!(t.len(), 1);
        let mut out = Vec::new();
        render(&mut out, &t);
        assert!(out.starts_with(b"(1 2 3 "));
        assert!(out.ends_with(b" 50000)"));
        // Dropping a 50,000-deep tree must not overflow either.
        drop(t);
    }

    #[test]
    fn ordered_subject_rfc5256() {
        let ms = [
            m("", &[], "A", false, 30),
            m("", &[], "B", false, 10),
            m("", &[], "A", false, 20),
            m("", &[], "A", false, 40),
            m("", &[], "C", false, 5),
        ];
        assert_eq!(run(&ms, false), "(5)(2)(3 (1)(4))");
        let ms = [m("", &[], "A", false, 2), m("", &[], "A", false, 1)];
        assert_eq!(run(&ms, false), "(2 1)");
    }
}
