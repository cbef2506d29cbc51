//! Dependency graph checks: cycles with their full path, missing dependencies.

use std::collections::HashMap;

/// Finds a dependency cycle among `deps` (component -> its dependencies), returning its
/// path with the first component repeated at the end (`a -> b -> a`).
pub(crate) fn find_cycle<'a>(deps: &HashMap<&'a str, &'a [String]>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        deps: &HashMap<&'a str, &'a [String]>,
        marks: &mut HashMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| *n == node).unwrap_or(0);
                let mut path: Vec<String> =
                    stack[start..].iter().map(|s| (*s).to_owned()).collect();
                path.push(node.to_owned());
                return Some(path);
            }
            None => {}
        }
        marks.insert(node, Mark::Visiting);
        stack.push(node);
        for dep in deps.get(node).copied().unwrap_or_default() {
            if deps.contains_key(dep.as_str()) {
                if let Some(cycle) = visit(dep.as_str(), deps, marks, stack) {
                    return Some(cycle);
                }
            }
        }
        stack.pop();
        marks.insert(node, Mark::Done);
        None
    }

    let mut names: Vec<&str> = deps.keys().copied().collect();
    names.sort_unstable();
    let mut marks = HashMap::with_capacity(names.len());
    names
        .into_iter()
        .find_map(|name| visit(name, deps, &mut marks, &mut Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph<'a>(edges: &'a [(&'a str, Vec<String>)]) -> HashMap<&'a str, &'a [String]> {
        edges
            .iter()
            .map(|(name, deps)| (*name, deps.as_slice()))
            .collect()
    }

    #[test]
    fn a_three_component_cycle_is_reported_with_its_whole_path() {
        let edges = [
            ("a", vec!["b".to_owned()]),
            ("b", vec!["c".to_owned()]),
            ("c", vec!["a".to_owned()]),
        ];
        let cycle = find_cycle(&graph(&edges)).unwrap();
        assert_eq!(cycle.join(" -> "), "a -> b -> c -> a");
    }

    #[test]
    fn a_diamond_is_not_a_cycle() {
        let edges = [
            ("top", vec!["left".to_owned(), "right".to_owned()]),
            ("left", vec!["base".to_owned()]),
            ("right", vec!["base".to_owned()]),
            ("base", vec![]),
        ];
        assert_eq!(find_cycle(&graph(&edges)), None);
    }
}
