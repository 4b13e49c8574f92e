//! moto's XML answers read as XML (roxmltree), never by splitting strings: an
//! element is found by its (local) name wherever it is, a resource's fields
//! are its element's children whatever their order.

use roxmltree::{Document, Node};

/// An element of a parsed answer.
#[derive(Clone, Copy)]
pub(crate) struct El<'a, 'i>(Node<'a, 'i>);

impl<'a, 'i> El<'a, 'i> {
    /// The element around this one.
    pub(crate) fn parent(&self) -> Option<El<'a, 'i>> {
        self.0.parent_element().map(El)
    }

    /// This element's text, trimmed.
    pub(crate) fn text(&self) -> String {
        self.0.text().unwrap_or("").trim().to_string()
    }

    /// The text of its first direct child named `name`.
    pub(crate) fn child(&self, name: &str) -> Option<String> {
        self.0
            .children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
            .map(|c| El(c).text())
    }

    /// Its direct children named `name`.
    pub(crate) fn children(&self, name: &str) -> Vec<El<'a, 'i>> {
        self.0
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == name)
            .map(El)
            .collect()
    }

    /// The texts of every element named `name` inside it, at any depth.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .descendants()
            .filter(|d| d.is_element() && d.tag_name().name() == name && *d != self.0)
            .map(|d| El(d).text())
            .collect()
    }

    /// Its source text, tags included.
    pub(crate) fn source(&self) -> &'i str {
        &self.0.document().input_text()[self.0.range()]
    }
}

/// `f` of every element named `tag` in `xml`, in document order (nothing for
/// text that is not XML).
pub(crate) fn each<T>(xml: &str, tag: &str, mut f: impl FnMut(El<'_, '_>) -> Option<T>) -> Vec<T> {
    let Ok(doc) = Document::parse(xml) else {
        return Vec::new();
    };
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == tag)
        .filter_map(|n| f(El(n)))
        .collect()
}

/// The texts of every element named `tag`.
pub(crate) fn values(xml: &str, tag: &str) -> Vec<String> {
    each(xml, tag, |e| Some(e.text()))
}

/// The text of the first element named `tag`.
pub(crate) fn first(xml: &str, tag: &str) -> Option<String> {
    values(xml, tag).into_iter().next()
}

/// For each element `<{id_tag}>X</…>`, the element at `state_path` from its
/// parent (`["state"]`, or `["State", "Code"]` for a load balancer) gets the
/// text `state(X, current)`; everything else stays byte for byte.
pub(crate) fn rewrite_state(
    xml: &str,
    id_tag: &str,
    state_path: &[&str],
    state: impl Fn(&str, &str) -> String,
) -> String {
    let Ok(doc) = Document::parse(xml) else {
        return xml.to_string();
    };
    // (byte range of the state's text, its new text), in document order.
    let mut edits: Vec<(std::ops::Range<usize>, String)> = doc
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == id_tag)
        .filter_map(|id| {
            let mut st = id.parent_element()?;
            for step in state_path {
                st = st
                    .children()
                    .find(|c| c.is_element() && c.tag_name().name() == *step)?;
            }
            let text = st.first_child().filter(|t| t.is_text())?;
            let new = state(El(id).text().as_str(), text.text().unwrap_or(""));
            Some((text.range(), new))
        })
        .collect();
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = String::with_capacity(xml.len());
    let mut at = 0;
    for (range, new) in edits {
        if range.start < at {
            continue;
        }
        out.push_str(&xml[at..range.start]);
        out.push_str(&new);
        at = range.end;
    }
    out.push_str(&xml[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_each_resources_own_state_in_any_field_order() {
        // The second resource's state comes before its id: a string scan that
        // takes "the next state after the id" would rewrite the wrong one.
        let xml = "<r xmlns=\"http://ec2\"><a><id>x</id><n/><state>available</state></a><a><state>available</state><id>y</id></a></r>";
        let out = rewrite_state(xml, "id", &["state"], |id, s| {
            if id == "y" {
                "pending".into()
            } else {
                s.into()
            }
        });
        assert_eq!(
            out,
            "<r xmlns=\"http://ec2\"><a><id>x</id><n/><state>available</state></a><a><state>pending</state><id>y</id></a></r>"
        );
    }

    #[test]
    fn rewrites_a_nested_state() {
        let xml =
            "<m><LoadBalancerArn>arn:1</LoadBalancerArn><State><Code>active</Code></State></m>";
        let out = rewrite_state(xml, "LoadBalancerArn", &["State", "Code"], |_, _| {
            "provisioning".into()
        });
        assert_eq!(
            out,
            "<m><LoadBalancerArn>arn:1</LoadBalancerArn><State><Code>provisioning</Code></State></m>"
        );
    }

    #[test]
    fn reads_fields_by_element_not_by_position() {
        let xml = "<r><set><item><addr><item><allocationId>eipalloc-1</allocationId><state>x</state></item></addr><id>nat-1</id><state>available</state></item></set></r>";
        let nats = each(xml, "id", |id| {
            let nat = id.parent()?;
            Some((id.text(), nat.child("state"), nat.all("allocationId")))
        });
        assert_eq!(
            nats,
            vec![(
                "nat-1".to_string(),
                Some("available".to_string()),
                vec!["eipalloc-1".to_string()]
            )]
        );
        assert_eq!(values(xml, "state"), vec!["x", "available"]);
        assert_eq!(first("not xml <", "state"), None);
        let src = each(xml, "addr", |a| Some(a.source().to_string()));
        assert!(src[0].starts_with("<addr><item>") && src[0].ends_with("</addr>"));
    }
}
